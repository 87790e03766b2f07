//! The assistant's settings, read from the `FLOTILLA_ASSISTANT_*`, `FLOTILLA_LLM_*`,
//! `FLOTILLA_OLLAMA_*` and `FLOTILLA_OPENAI_*` variables declared in the runtime's table.

use std::time::Duration;

use flotilla_runtime::config::{
    ASSISTANT_HISTORY, ASSISTANT_MAX_STEPS, ASSISTANT_PROVIDER, ConfigError, Env, LLM_TIMEOUT_MS, OLLAMA_MODEL,
    OLLAMA_URL, OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_MODEL,
};

/// Which engine answers a turn.
#[derive(Clone, PartialEq, Eq)]
pub enum Provider {
    /// The offline rules engine (`crate::rules`).
    Rules,
    /// Ollama's native `/api/chat` with tools.
    Ollama { url: String, model: String },
    /// Any OpenAI-compatible `/chat/completions` endpoint with tools.
    OpenAi { base_url: String, api_key: String, model: String },
}

impl Provider {
    /// The `provider` label of the metrics and events.
    pub fn name(&self) -> &'static str {
        match self {
            Provider::Rules => "rules",
            Provider::Ollama { .. } => "ollama",
            Provider::OpenAi { .. } => "openai",
        }
    }
}

impl std::fmt::Debug for Provider {
    // The API key is a secret: never in logs or panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Provider::Rules => f.write_str("Rules"),
            Provider::Ollama { url, model } => {
                f.debug_struct("Ollama").field("url", url).field("model", model).finish()
            }
            Provider::OpenAi { base_url, api_key, model } => f
                .debug_struct("OpenAi")
                .field("base_url", base_url)
                .field("api_key", &if api_key.is_empty() { "" } else { "<set>" })
                .field("model", model)
                .finish(),
        }
    }
}

/// The assistant's settings (provider, history window, LLM endpoints and limits).
#[derive(Debug, Clone)]
pub struct Config {
    pub provider: Provider,
    /// How many of a conversation's newest messages a turn reads.
    pub history: usize,
    /// Most model calls in one turn.
    pub max_steps: u32,
    /// Time limit of one LLM request.
    pub llm_timeout: Duration,
    /// Consecutive LLM failures that open its circuit.
    pub breaker_threshold: u32,
    /// How long an open LLM circuit sends turns straight to the fallback.
    pub breaker_open: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            provider: Provider::Rules,
            history: 20,
            max_steps: 5,
            llm_timeout: Duration::from_secs(30),
            breaker_threshold: 3,
            breaker_open: Duration::from_secs(30),
        }
    }
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let provider = match env.string(ASSISTANT_PROVIDER).as_str() {
            "rules" => Provider::Rules,
            "ollama" => Provider::Ollama { url: base_url(env, OLLAMA_URL)?, model: model(env, OLLAMA_MODEL)? },
            "openai" => Provider::OpenAi {
                base_url: base_url(env, OPENAI_BASE_URL)?,
                // Optional: local OpenAI-compatible servers (vLLM, llama.cpp) often take none.
                api_key: env.get(OPENAI_API_KEY).map(|k| k.trim().to_owned()).unwrap_or_default(),
                model: model(env, OPENAI_MODEL)?,
            },
            other => return Err(ConfigError::new(ASSISTANT_PROVIDER, other, "expected rules, ollama or openai")),
        };
        Ok(Self {
            provider,
            history: env.int_in(ASSISTANT_HISTORY, 1, 500)? as usize,
            max_steps: env.int_in(ASSISTANT_MAX_STEPS, 1, 50)? as u32,
            llm_timeout: env.millis(LLM_TIMEOUT_MS, 100, 600_000)?,
            ..Self::default()
        })
    }
}

/// An `http(s)://host[:port][/path]` URL, without a trailing slash.
fn base_url(env: &Env, var: &str) -> Result<String, ConfigError> {
    let raw = env.string(var);
    let uri: axum::http::Uri = raw.parse().map_err(|e| ConfigError::new(var, &raw, e))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none_or(str::is_empty) {
        return Err(ConfigError::new(var, &raw, "expected an http:// or https:// URL"));
    }
    if uri.query().is_some() || raw.contains('#') {
        return Err(ConfigError::new(var, &raw, "a base URL takes no query or fragment"));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

fn model(env: &Env, var: &str) -> Result<String, ConfigError> {
    let raw = env.string(var);
    if raw.is_empty() || raw.len() > 200 || raw.chars().any(char::is_control) {
        return Err(ConfigError::new(var, &raw, "expected a model name"));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_rules_engine() {
        let cfg = Config::from_env(&Env::default()).unwrap();
        assert_eq!(cfg.provider, Provider::Rules);
        assert_eq!((cfg.history, cfg.max_steps, cfg.llm_timeout), (20, 5, Duration::from_secs(30)));
    }

    #[test]
    fn providers_read_their_endpoints() {
        let env = Env::from_pairs([(ASSISTANT_PROVIDER, "ollama"), (OLLAMA_URL, "http://ollama:11434/")]);
        let cfg = Config::from_env(&env).unwrap();
        assert_eq!(cfg.provider, Provider::Ollama { url: "http://ollama:11434".into(), model: "llama3.1".into() });
        let env = Env::from_pairs([(ASSISTANT_PROVIDER, "openai"), (OPENAI_API_KEY, "sk-secret")]);
        let cfg = Config::from_env(&env).unwrap();
        assert_eq!(cfg.provider.name(), "openai");
        assert!(!format!("{cfg:?}").contains("sk-secret"), "the key never shows in Debug");
    }

    #[test]
    fn invalid_values_name_the_variable() {
        let cases = [
            (ASSISTANT_PROVIDER, "gpt"),
            (ASSISTANT_HISTORY, "0"),
            (ASSISTANT_MAX_STEPS, "many"),
            (LLM_TIMEOUT_MS, "5"),
        ];
        for (var, value) in cases {
            let err = Config::from_env(&Env::from_pairs([(var, value)])).unwrap_err();
            assert_eq!(err.var, var, "{err}");
        }
        let env = Env::from_pairs([(ASSISTANT_PROVIDER, "ollama"), (OLLAMA_URL, "ollama:11434")]);
        assert_eq!(Config::from_env(&env).unwrap_err().var, OLLAMA_URL);
        let env = Env::from_pairs([(ASSISTANT_PROVIDER, "openai"), (OPENAI_BASE_URL, "ftp://x/v1")]);
        assert_eq!(Config::from_env(&env).unwrap_err().var, OPENAI_BASE_URL);
    }
}
