//! Intent parsing: one message in, what the user asked for out. Pure (given the clock), so it
//! is unit-tested without any service.
//!
//! The message is never rewritten: titles, search text and references are cut from the
//! original words; only the words that said a date, priority or tag are left out of a title.

use serde::{Deserialize, Serialize};

use super::dates::{self, Clock};

/// One word of the message: as typed, and lowercased without surrounding punctuation.
#[derive(Debug, Clone, PartialEq)]
pub struct Tok {
    pub raw: String,
    pub norm: String,
}

pub fn tokenize(s: &str) -> Vec<Tok> {
    s.split_whitespace()
        .filter_map(|raw| {
            let lower = raw.replace(['\u{2019}', '\u{2018}'], "'").to_lowercase();
            let norm = lower
                .trim_matches(|c: char| {
                    matches!(c, ',' | '.' | '!' | '?' | ';' | ':' | '"' | '\u{201c}' | '\u{201d}' | '(' | ')' | '\'')
                })
                .to_owned();
            (!norm.is_empty()).then(|| Tok { raw: raw.to_owned(), norm })
        })
        .collect()
}

/// The original text of some tokens, joined by single spaces, without separator punctuation at
/// either end.
pub fn raw_text(toks: &[&Tok]) -> String {
    let joined = toks.iter().map(|t| t.raw.as_str()).collect::<Vec<_>>().join(" ");
    joined
        .trim_matches(|c: char| matches!(c, ',' | ';' | ':' | '-' | '\u{2013}' | '\u{2014}') || c.is_whitespace())
        .trim_end_matches('.')
        .trim_matches(|c: char| matches!(c, '"' | '\'' | '\u{201c}' | '\u{201d}' | '\u{2018}' | '\u{2019}'))
        .trim()
        .to_owned()
}

/// Which tasks a message means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Target {
    /// 1-based positions in the last list shown.
    Positions(Vec<usize>),
    /// The last one of the last list shown.
    Last,
    /// The task just talked about ("it", "that").
    It,
    Id(String),
    /// A fragment of a title.
    Text(String),
    /// Every completed task.
    Completed,
    /// Every task.
    All,
}

/// A change of a due date.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DueChange {
    #[default]
    Keep,
    Clear,
    Set(String),
}

/// The fields an update sets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    #[serde(default)]
    pub due: DueChange,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// What to do to the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Complete,
    Reopen,
    Delete,
    Update { change: Change },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewTask {
    pub title: String,
    pub description: Option<String>,
    pub priority: Option<String>,
    pub tags: Vec<String>,
    pub due_at: Option<String>,
    pub remind_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// all | pending | completed
    pub status: &'static str,
    pub priority: Option<String>,
    pub tag: Option<String>,
    pub due_before: Option<String>,
    pub due_after: Option<String>,
    pub overdue: bool,
    pub sort: &'static str,
    pub order: Option<&'static str>,
    /// How the reply names the selection ("pending tasks due today").
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    Empty,
    Greeting,
    Thanks,
    Help,
    Yes,
    No,
    Undo,
    Add(NewTask),
    List(ListQuery),
    Search(String),
    Act {
        op: Op,
        target: Target,
    },
    /// "rename X to Y": each way of splitting at "to" (the first whose X resolves wins).
    Rename(Vec<(Target, String)>),
    /// A command was recognised but a piece is missing: the question to ask.
    NeedMore(String),
    Unknown,
}

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions): "compelte" and
/// "shwo" are one edit from their words.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Add,
    Remind,
    List,
    Search,
    Complete,
    Reopen,
    Delete,
    Rename,
    Move,
    Update,
    Prioritize,
    Deprioritize,
    Tag,
    Mark,
    Undo,
    Help,
}

const VERBS: &[(&str, Verb)] = &[
    ("add", Verb::Add),
    ("create", Verb::Add),
    ("new", Verb::Add),
    ("todo", Verb::Add),
    ("remind", Verb::Remind),
    ("show", Verb::List),
    ("list", Verb::List),
    ("display", Verb::List),
    ("view", Verb::List),
    ("see", Verb::List),
    ("tasks", Verb::List),
    ("search", Verb::Search),
    ("find", Verb::Search),
    ("look", Verb::Search),
    ("lookup", Verb::Search),
    ("complete", Verb::Complete),
    ("finish", Verb::Complete),
    ("finished", Verb::Complete),
    ("completed", Verb::Complete),
    ("done", Verb::Complete),
    ("check", Verb::Complete),
    ("tick", Verb::Complete),
    ("reopen", Verb::Reopen),
    ("uncheck", Verb::Reopen),
    ("unmark", Verb::Reopen),
    ("uncomplete", Verb::Reopen),
    ("untick", Verb::Reopen),
    ("delete", Verb::Delete),
    ("remove", Verb::Delete),
    ("drop", Verb::Delete),
    ("erase", Verb::Delete),
    ("trash", Verb::Delete),
    ("clear", Verb::Delete),
    ("cancel", Verb::Delete),
    ("rename", Verb::Rename),
    ("retitle", Verb::Rename),
    ("move", Verb::Move),
    ("reschedule", Verb::Move),
    ("postpone", Verb::Move),
    ("push", Verb::Move),
    ("delay", Verb::Move),
    ("defer", Verb::Move),
    ("shift", Verb::Move),
    ("change", Verb::Update),
    ("set", Verb::Update),
    ("update", Verb::Update),
    ("edit", Verb::Update),
    ("modify", Verb::Update),
    ("make", Verb::Update),
    ("prioritize", Verb::Prioritize),
    ("prioritise", Verb::Prioritize),
    ("deprioritize", Verb::Deprioritize),
    ("deprioritise", Verb::Deprioritize),
    ("tag", Verb::Tag),
    ("label", Verb::Tag),
    ("mark", Verb::Mark),
    ("undo", Verb::Undo),
    ("help", Verb::Help),
];

/// Common short typos that edit distance would not safely catch.
const SHORT_TYPOS: &[(&str, Verb)] =
    &[("ad", Verb::Add), ("ls", Verb::List), ("lst", Verb::List), ("del", Verb::Delete), ("rm", Verb::Delete)];

/// Words one edit away from a verb that are words in their own right.
const NOT_TYPOS: &[&str] = &[
    "fine", "mask", "dome", "gone", "none", "node", "note", "move", "more", "last", "lost", "mine", "tax", "bag", "sea",
];

fn verb(word: &str) -> Option<Verb> {
    if let Some((_, v)) = VERBS.iter().chain(SHORT_TYPOS).find(|(w, _)| *w == word) {
        return Some(*v);
    }
    if word.chars().count() < 4 || NOT_TYPOS.contains(&word) {
        return None;
    }
    let mut best: Option<(usize, Verb)> = None;
    for (w, v) in VERBS {
        // Three-letter verbs are too close to other words, except "add" ("addd", "adds").
        if w.len() < 4 && *w != "add" {
            continue;
        }
        let d = edit_distance(word, w);
        if d == 1 && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, *v));
        }
    }
    best.map(|(_, v)| v)
}

const YES: &[&str] =
    &["yes", "y", "yeah", "yep", "yup", "sure", "ok", "okay", "confirm", "confirmed", "affirmative", "correct"];
const YES_TAIL: &[&str] = &[
    "please", "do", "it", "go", "ahead", "delete", "them", "all", "sure", "thanks", "yes", "of", "course", "that's",
    "right",
];
const NO: &[&str] = &["no", "n", "nope", "nah", "cancel", "stop", "abort", "don't", "dont"];
const NO_TAIL: &[&str] = &[
    "thanks", "thank", "you", "please", "don't", "dont", "do", "it", "keep", "them", "that", "never", "mind", "way",
    "not",
];
const GREETINGS: &[&str] = &["hi", "hello", "hey", "hiya", "howdy", "yo", "greetings", "hallo", "helo", "hej"];
const THANKS: &[&str] = &["thanks", "thank", "thx", "ty", "cheers", "great", "awesome", "perfect", "cool", "nice"];
const POLITE_LEAD: &[&str] =
    &["please", "pls", "plz", "kindly", "ok", "okay", "so", "now", "then", "and", "also", "oh"];

fn all_in(words: &[&str], set: &[&str]) -> bool {
    words.iter().all(|w| set.contains(w))
}

/// Parses one message.
pub fn parse(message: &str, clock: &Clock) -> Intent {
    let all = tokenize(message);
    if all.is_empty() {
        return if message.trim().is_empty() { Intent::Empty } else { Intent::Help };
    }
    let words: Vec<&str> = all.iter().map(|t| t.norm.as_str()).collect();
    let phrase = words.join(" ");

    // Whole-message answers and small talk.
    if words.len() <= 5 && YES.contains(&words[0]) && all_in(&words[1..], YES_TAIL) {
        return Intent::Yes;
    }
    if words.len() <= 5 && (NO.contains(&words[0]) && all_in(&words[1..], NO_TAIL) || phrase == "never mind") {
        return Intent::No;
    }
    if words.len() <= 4
        && (verb(words[0]) == Some(Verb::Undo) || matches!(words[0], "revert" | "oops"))
        && all_in(&words[1..], &["that", "it", "the", "last", "change", "action", "please", "one", "undo", "this"])
    {
        return Intent::Undo;
    }
    if phrase == "take that back" {
        return Intent::Undo;
    }
    if matches!(
        phrase.as_str(),
        "what can you do" | "what can i say" | "how does this work" | "commands" | "how do i use this"
    ) || (words.len() <= 3 && verb(words[0]) == Some(Verb::Help))
        || message.trim() == "?"
    {
        return Intent::Help;
    }
    let small_talk = |w: &[&str]| {
        w.iter().all(|x| {
            [
                "there",
                "again",
                "bot",
                "assistant",
                "you",
                "all",
                "flotilla",
                "friend",
                "so",
                "much",
                "a",
                "lot",
                "how",
                "are",
                "doing",
                "morning",
                "afternoon",
                "evening",
                "day",
                "thanks",
                "again",
            ]
            .contains(x)
        })
    };
    if words.len() <= 5 && GREETINGS.contains(&words[0]) && small_talk(&words[1..]) {
        return Intent::Greeting;
    }
    if words.len() <= 3
        && words[0] == "good"
        && words.get(1).is_some_and(|w| ["morning", "afternoon", "evening", "day"].contains(w))
    {
        return Intent::Greeting;
    }
    if words.len() <= 5 && THANKS.contains(&words[0]) && small_talk(&words[1..]) {
        return Intent::Thanks;
    }

    // Politeness around the command.
    let mut s = 0;
    let mut e = all.len();
    loop {
        let w = |k: usize| all.get(k).map(|t| t.norm.as_str());
        if s < e && POLITE_LEAD.contains(&all[s].norm.as_str()) && e - s > 1 {
            s += 1;
        } else if matches!(w(s), Some("can" | "could" | "would" | "will")) && matches!(w(s + 1), Some("you" | "u")) {
            s += 2;
        } else if (w(s) == Some("i") && matches!((w(s + 1), w(s + 2)), (Some("want" | "wanna"), Some("to"))))
            || (w(s) == Some("i'd") && w(s + 1) == Some("like") && w(s + 2) == Some("to"))
        {
            s += 3;
        } else {
            break;
        }
    }
    while e > s + 1 && matches!(all[e - 1].norm.as_str(), "please" | "pls" | "thanks" | "thx") {
        e -= 1;
    }
    if e > s + 2 && all[e - 2].norm == "thank" && all[e - 1].norm == "you" {
        e -= 2;
    }
    let toks: Vec<&Tok> = all[s..e].iter().collect();
    if toks.is_empty() {
        return Intent::Unknown;
    }
    parse_command(&toks, clock)
}

fn norms<'a>(toks: &[&'a Tok]) -> Vec<&'a str> {
    toks.iter().map(|t| t.norm.as_str()).collect()
}

fn parse_command(toks: &[&Tok], clock: &Clock) -> Intent {
    let words = norms(toks);
    let first = words[0];
    let rest = &toks[1..];
    let w = |k: usize| words.get(k).copied();

    // "I finished the report", "I need to call mom".
    if matches!(first, "i" | "i've" | "ive" | "i'm" | "im") {
        let mut k = 1;
        while w(k).is_some_and(|x| ["have", "am", "just", "already", "finally", "also", "totally", "all"].contains(&x))
        {
            k += 1;
        }
        match w(k) {
            Some("finished" | "did" | "done" | "completed" | "complete" | "finish" | "ticked" | "checked") => {
                let mut t = k + 1;
                if matches!(w(t), Some("with" | "off")) {
                    t += 1;
                }
                return act(Op::Complete, &toks[t..], "Which task did you finish?");
            }
            Some("need" | "have" | "must" | "should" | "gotta") | Some("got") => {
                let mut t = k + 1;
                if matches!(w(t), Some("to")) {
                    t += 1;
                }
                return add(&toks[t..], clock, false);
            }
            _ => {}
        }
    }
    // "get rid of X".
    if first == "get" && w(1) == Some("rid") && w(2) == Some("of") {
        return delete(&toks[3..], clock);
    }
    // "don't forget to X", "remember to X".
    if matches!(first, "don't" | "dont") && w(1) == Some("forget") {
        let t = if w(2) == Some("to") { 3 } else { 2 };
        return add(&toks[t..], clock, true);
    }
    if first == "remember" && w(1) == Some("to") {
        return add(&toks[2..], clock, true);
    }
    if is_list_question(&words) {
        return list(toks, clock);
    }

    match verb(first) {
        Some(Verb::Add) => {
            // "add tag work to X" / "add #work to X".
            if let Some(i) = words.iter().position(|x| *x == "to")
                && i >= 2
                && (matches!(w(1), Some("tag" | "tags" | "label")) || words[1..i].iter().all(|x| is_tag(x)))
            {
                let tags: Vec<String> = words[1..i]
                    .iter()
                    .filter(|x| !matches!(**x, "tag" | "tags" | "label" | "and"))
                    .map(|x| x.trim_start_matches('#').to_owned())
                    .collect();
                if !tags.is_empty() {
                    let change = Change { add_tags: tags, ..Change::default() };
                    return act(Op::Update { change }, &toks[i + 1..], "Which task should I tag?");
                }
            }
            if first == "todo" && matches!(w(1), None | Some("list")) || first == "new" && w(1).is_none() {
                return list(toks, clock);
            }
            add(rest, clock, false)
        }
        Some(Verb::Remind) => {
            let mut t = 1;
            if w(t) == Some("me") {
                t += 1;
            }
            if matches!(w(t), Some("to" | "about" | "of")) {
                t += 1;
            }
            add(&toks[t..], clock, true)
        }
        Some(Verb::List) => list(toks, clock),
        Some(Verb::Search) => {
            let mut t = 1;
            while w(t).is_some_and(|x| {
                ["for", "up", "tasks", "task", "about", "containing", "with", "mentioning", "me"].contains(&x)
            }) {
                t += 1;
            }
            let q = raw_text(&toks[t..]);
            if q.is_empty() { Intent::NeedMore("What should I search for?".into()) } else { Intent::Search(q) }
        }
        Some(Verb::Complete) => {
            let mut t = 1;
            if matches!(w(t), Some("off" | "with")) {
                t += 1;
            }
            let mut end = toks.len();
            if end > t && words[end - 1] == "off" {
                end -= 1;
            }
            if end > t && words[t..end].iter().all(|x| ["all", "everything", "tasks", "my", "the"].contains(x)) {
                return Intent::NeedMore("I complete one task at a time: which one is done?".into());
            }
            act(Op::Complete, &toks[t..end], "Which task is done?")
        }
        Some(Verb::Reopen) => act(Op::Reopen, rest, "Which task should I reopen?"),
        Some(Verb::Delete) => delete(rest, clock),
        Some(Verb::Rename) => rename(rest),
        Some(Verb::Move) => reschedule(rest, clock),
        Some(Verb::Update) => update(rest, clock),
        Some(Verb::Prioritize) => act(
            Op::Update { change: Change { priority: Some("high".into()), ..Change::default() } },
            rest,
            "Which task should I prioritize?",
        ),
        Some(Verb::Deprioritize) => act(
            Op::Update { change: Change { priority: Some("low".into()), ..Change::default() } },
            rest,
            "Which task should I deprioritize?",
        ),
        Some(Verb::Tag) => tag(rest),
        Some(Verb::Mark) => mark(rest, clock),
        Some(Verb::Undo) => Intent::Undo,
        Some(Verb::Help) => Intent::Help,
        None => implicit(toks, clock),
    }
}

/// "what's left for today?", "do I have anything due tomorrow", "how many tasks …".
fn is_list_question(words: &[&str]) -> bool {
    let first = words[0];
    matches!(first, "what" | "what's" | "whats" | "which" | "anything" | "any" | "whats's")
        || (first == "how" && words.get(1) == Some(&"many"))
        || (first == "do" && words.contains(&"have"))
        || (first == "my" && words.get(1).is_some_and(|w| ["tasks", "todo", "todos", "list", "to-do"].contains(w)))
        || (first == "is" && words.contains(&"anything"))
        || (["overdue", "pending"].contains(&first) && words.len() <= 2)
}

/// No command word: "the report is done", "#2 done", or nothing understood.
fn implicit(toks: &[&Tok], _clock: &Clock) -> Intent {
    let words = norms(toks);
    let n = words.len();
    let ends = |tail: &[&str]| n > tail.len() && words[n - tail.len()..] == *tail;
    for (tail, op) in [
        (&["is", "not", "done"][..], Op::Reopen),
        (&["not", "done"][..], Op::Reopen),
        (&["is", "done"][..], Op::Complete),
        (&["is", "finished"][..], Op::Complete),
        (&["is", "complete"][..], Op::Complete),
        (&["is", "completed"][..], Op::Complete),
        (&["done"][..], Op::Complete),
        (&["finished"][..], Op::Complete),
        (&["completed"][..], Op::Complete),
    ] {
        if ends(tail) {
            return act(op, &toks[..n - tail.len()], "Which task?");
        }
    }
    Intent::Unknown
}

fn act(op: Op, toks: &[&Tok], question: &str) -> Intent {
    match target(toks) {
        Some(target) => Intent::Act { op, target },
        None => Intent::NeedMore(question.into()),
    }
}

const ORDINALS: &[&str] =
    &["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth"];

fn position(w: &str) -> Option<usize> {
    if let Some(i) = ORDINALS.iter().position(|o| *o == w) {
        return Some(i + 1);
    }
    let digits = w.trim_start_matches('#').trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &w.trim_start_matches('#')[digits.len()..];
    if !(suffix.is_empty() || ["st", "nd", "rd", "th"].contains(&suffix)) {
        return None;
    }
    digits.parse::<usize>().ok().filter(|n| (1..=1000).contains(n))
}

/// Which task(s) some words mean.
pub fn target(toks: &[&Tok]) -> Option<Target> {
    let mut s = 0;
    let mut e = toks.len();
    let lead = ["the", "my", "task", "item", "number", "no", "num", "nr", "entry", "on", "to"];
    let trail = [
        "one", "ones", "task", "tasks", "item", "items", "please", "on", "in", "from", "list", "the", "as", "to", "of",
        "for", "is", "was", "entry", "my",
    ];
    while s < e && lead.contains(&toks[s].norm.as_str()) {
        s += 1;
    }
    while e > s && trail.contains(&toks[e - 1].norm.as_str()) {
        e -= 1;
    }
    // "the second one" → "second" (trailing "one" is not a title word here).
    let toks = &toks[s..e];
    if toks.is_empty() {
        return None;
    }
    let words = norms(toks);
    if matches!(words.as_slice(), ["it"] | ["that"] | ["this"] | ["that", "task"] | ["this", "task"] | ["them"]) {
        return Some(Target::It);
    }
    if matches!(words.as_slice(), ["last"] | ["final"] | ["bottom"] | ["very", "last"]) {
        return Some(Target::Last);
    }
    if words == ["top"] {
        return Some(Target::Positions(vec![1]));
    }
    let nums: Vec<&str> =
        words.iter().copied().filter(|w| !matches!(*w, "and" | "&" | "," | "the" | "number" | "#")).collect();
    if !nums.is_empty() && nums.iter().all(|w| position(w).is_some()) {
        let mut p: Vec<usize> = nums.iter().filter_map(|w| position(w)).collect();
        p.dedup();
        return Some(Target::Positions(p));
    }
    if words.len() == 1 && flotilla_runtime::ids::is_id(words[0]) {
        return Some(Target::Id(words[0].to_owned()));
    }
    let text = raw_text(toks);
    let text = text.strip_suffix("'s").unwrap_or(&text).to_owned();
    (!text.is_empty()).then_some(Target::Text(text))
}

/// "#word" (its length is the API's to check, so a bad tag is reported, not kept in a title).
fn is_tag(w: &str) -> bool {
    w.len() > 1
        && w.starts_with('#')
        && w[1..].chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_')
        && !w[1..].chars().all(|c| c.is_ascii_digit())
}

/// A priority said in `words` and the indices that said it: "high priority", "priority: low",
/// "with high priority", "urgent" at the end.
fn priority(words: &[&str]) -> Option<(String, Vec<usize>)> {
    let level = |w: &str| match w {
        "high" | "hi" | "top" | "urgent" => Some("high"),
        "medium" | "med" | "normal" | "mid" => Some("medium"),
        "low" | "lo" => Some("low"),
        _ => None,
    };
    let is_prio = |w: &str| matches!(w, "priority" | "prio" | "pri" | "importance");
    for i in 0..words.len() {
        let mut found: Option<(&str, Vec<usize>)> = None;
        if let Some(l) = level(words[i])
            && words.get(i + 1).is_some_and(|w| is_prio(w))
        {
            found = Some((l, vec![i, i + 1]));
        } else if is_prio(words[i])
            && let Some(l) = words.get(i + 1).and_then(|w| level(w))
        {
            found = Some((l, vec![i, i + 1]));
        } else if is_prio(words[i])
            && matches!(words.get(i + 1), Some(&"to" | &"is" | &"as" | &"of"))
            && let Some(l) = words.get(i + 2).and_then(|w| level(w))
        {
            found = Some((l, vec![i, i + 1, i + 2]));
        }
        if let Some((l, mut used)) = found {
            if i > 0 && matches!(words[i - 1], "with" | "as" | "at" | "a") {
                used.insert(0, i - 1);
                if i > 1 && words[i - 2] == "with" && words[i - 1] == "a" {
                    used.insert(0, i - 2);
                }
            }
            return Some((l.to_owned(), used));
        }
    }
    // "urgent"/"important" as the last word, or "!" markers.
    if let Some(i) = words.iter().rposition(|w| matches!(*w, "urgent" | "important" | "asap" | "!!" | "!!!"))
        && (i + 1 == words.len() || words[i + 1..].iter().all(|w| is_tag(w)))
    {
        return Some(("high".into(), vec![i]));
    }
    None
}

/// Words that end a title without being part of it ("… to my list", "… and").
fn trim_title(toks: &mut Vec<&Tok>) {
    let tails: [&[&str]; 7] = [
        &["to", "my", "list"],
        &["to", "the", "list"],
        &["to", "my", "tasks"],
        &["to", "my", "todo", "list"],
        &["to", "my", "to-do", "list"],
        &["on", "my", "list"],
        &["to", "my", "todos"],
    ];
    loop {
        let n = toks.len();
        let words = norms(toks);
        if let Some(t) = tails.iter().find(|t| n > t.len() && words[n - t.len()..] == ***t) {
            toks.truncate(n - t.len());
            continue;
        }
        if n > 1 && matches!(words[n - 1], "and" | "with" | "at" | "on" | "by" | "due" | "to" | "for" | "-" | "&") {
            toks.pop();
            continue;
        }
        break;
    }
}

fn add(toks: &[&Tok], clock: &Clock, remind: bool) -> Intent {
    let mut s = 0;
    // "add a new task to buy milk", "add task: buy milk".
    let mut after_noun = false;
    while s < toks.len() {
        let w = toks[s].norm.as_str();
        if ["a", "an", "new"].contains(&w)
            && s + 1 < toks.len()
            && ["task", "todo", "item", "reminder", "new"].contains(&toks[s + 1].norm.as_str())
        {
            s += 1;
        } else if ["task", "todo", "item", "reminder"].contains(&w) && s + 1 < toks.len() {
            s += 1;
            after_noun = true;
        } else if ["called", "named", "titled"].contains(&w) || (w == "to" && after_noun) {
            s += 1;
            after_noun = false;
        } else {
            break;
        }
    }
    let toks = &toks[s..];
    if toks
        .iter()
        .all(|t| ["a", "an", "new", "task", "todo", "item", "reminder", "to", "me"].contains(&t.norm.as_str()))
    {
        return Intent::NeedMore("What should the task say? For example “add buy milk tomorrow at 5pm”.".into());
    }
    let raw_all = toks.iter().map(|t| t.raw.as_str()).collect::<Vec<_>>().join(" ");

    // A quoted title is taken as is; the words around it still set date, priority and tags.
    let quoted = quoted_span(&raw_all);
    let (title_quoted, option_text) = match &quoted {
        Some((q, outside)) => (Some(q.clone()), outside.clone()),
        None => (None, raw_all.clone()),
    };
    let otoks = tokenize(&option_text);
    // "note: …" starts a description.
    let note_at = otoks.iter().position(|t| {
        ["note", "notes", "description", "details", "desc"].contains(&t.norm.as_str()) && t.raw.ends_with(':')
    });
    let (main, description) = match note_at {
        Some(i) => (&otoks[..i], Some(raw_text(&otoks[i + 1..].iter().collect::<Vec<_>>())).filter(|d| !d.is_empty())),
        None => (&otoks[..], None),
    };
    let words: Vec<String> = main.iter().map(|t| t.norm.clone()).collect();
    let word_refs: Vec<&str> = words.iter().map(String::as_str).collect();
    let mut used = vec![false; main.len()];
    let mut tags = Vec::new();
    for (i, w) in word_refs.iter().enumerate() {
        if is_tag(w) {
            tags.push(w.trim_start_matches('#').to_owned());
            used[i] = true;
        }
    }
    let prio = priority(&word_refs);
    if let Some((_, idx)) = &prio {
        for &i in idx {
            used[i] = true;
        }
    }
    let date_words: Vec<String> =
        words.iter().enumerate().map(|(i, w)| if used[i] { String::new() } else { w.clone() }).collect();
    let found = dates::find(&date_words, clock);
    if let Some(f) = &found {
        for &i in &f.used {
            used[i] = true;
        }
    }
    let title = match title_quoted {
        Some(t) => t,
        None => {
            let mut kept: Vec<&Tok> = main.iter().zip(&used).filter(|(_, u)| !**u).map(|(t, _)| t).collect();
            trim_title(&mut kept);
            raw_text(&kept)
        }
    };
    if title.is_empty() {
        return Intent::NeedMore("What should the task say? For example “add buy milk tomorrow at 5pm”.".into());
    }
    let due_at = found.as_ref().and_then(|f| f.rfc3339(clock));
    let remind_at = if remind { found.as_ref().and_then(|f| f.reminder(clock)).map(|t| t.to_string()) } else { None };
    Intent::Add(NewTask { title, description, priority: prio.map(|(p, _)| p), tags, due_at, remind_at })
}

/// The first "…" or “…” in `s`: (inside, s without it).
fn quoted_span(s: &str) -> Option<(String, String)> {
    for (open, close) in [('"', '"'), ('\u{201c}', '\u{201d}')] {
        if let Some(a) = s.find(open) {
            let after = a + open.len_utf8();
            if let Some(len) = s[after..].find(close) {
                let inner = s[after..after + len].trim().to_owned();
                if !inner.is_empty() {
                    let outside = format!("{} {}", &s[..a], &s[after + len + close.len_utf8()..]);
                    return Some((inner, outside));
                }
            }
        }
    }
    None
}

fn list(toks: &[&Tok], clock: &Clock) -> Intent {
    let words: Vec<String> = toks.iter().map(|t| t.norm.clone()).collect();
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let has = |x: &str| w.contains(&x);
    let negated_done =
        w.windows(2).any(|p| p[0] == "not" && ["done", "completed", "finished", "complete"].contains(&p[1]))
            || ["undone", "incomplete", "uncompleted", "unfinished"].iter().any(|x| has(x));
    let mut q = ListQuery {
        status: "pending",
        priority: None,
        tag: None,
        due_before: None,
        due_after: None,
        overdue: false,
        sort: "due",
        order: None,
        label: String::new(),
    };
    let done_word = ["completed", "done", "finished", "complete", "did", "ticked"].iter().any(|x| has(x));
    let question_done = w.first().is_some_and(|f| ["what", "what's", "whats", "which"].contains(f))
        && (has("done") || has("did") || has("finished"))
        && !has("left")
        && !has("due");
    if done_word
        && !negated_done
        && (question_done || !["what", "what's", "whats", "which"].contains(&w[0]) || has("completed"))
    {
        q.status = "completed";
    } else if (has("all") || has("everything") || has("every")) && !has("left") && !negated_done {
        q.status = "all";
    }
    if let Some((p, _)) = priority(&w) {
        q.priority = Some(p);
    } else if has("high") || has("urgent") || has("important") {
        q.priority = Some("high".into());
    } else if has("low") {
        q.priority = Some("low".into());
    } else if has("medium") {
        q.priority = Some("medium".into());
    }
    if let Some(t) = w.iter().find(|x| is_tag(x)) {
        q.tag = Some(t.trim_start_matches('#').to_owned());
    } else if let Some(i) = w.iter().position(|x| ["tagged", "labeled", "labelled"].contains(x))
        && let Some(t) = w.get(i + 1)
    {
        q.tag = Some(t.trim_start_matches('#').to_owned());
    } else if let Some(i) = w.windows(2).position(|p| p == ["with", "tag"] || p == ["with", "label"])
        && let Some(t) = w.get(i + 2)
    {
        q.tag = Some(t.trim_start_matches('#').to_owned());
    }
    if ["overdue", "late", "missed"].iter().any(|x| has(x)) || w.windows(2).any(|p| p == ["past", "due"]) {
        // Overdue against the conversation's clock (the API's `overdue` uses the server's).
        q.overdue = true;
        q.status = "pending";
        q.due_before = Some(clock.now.to_string());
    }
    let today = clock.today();
    let mut when = String::new();
    if has("week") {
        let to_monday = 7 - i64::from(today.weekday().to_monday_zero_offset());
        let next_monday = dates::add_days(today, to_monday);
        if has("next") {
            q.due_after = next_monday.and_then(|d| clock.start_of(d)).map(|t| t.to_string());
            q.due_before =
                next_monday.and_then(|d| dates::add_days(d, 7)).and_then(|d| clock.start_of(d)).map(|t| t.to_string());
            when = "due next week".into();
        } else {
            q.due_before = next_monday.and_then(|d| clock.start_of(d)).map(|t| t.to_string());
            when = "due this week".into();
        }
    } else if let Some(f) = dates::find(&words, clock)
        && let Some(date) = f.date
    {
        let end = dates::add_days(date, 1).and_then(|d| clock.start_of(d)).map(|t| t.to_string());
        if date == today {
            // Today's list includes what is already late.
            q.due_before = end;
            when = "due today".into();
        } else {
            q.due_after = clock.start_of(date).map(|t| t.to_string());
            q.due_before = end;
            let d = clock.describe(&clock.at(date, 12, 0).map(|t| t.to_string()).unwrap_or_default());
            when = format!("due {}", d.split(" at ").next().unwrap_or_default());
        }
    }
    if has("by") || has("sorted") || has("sort") || has("order") {
        if has("priority") || has("importance") {
            q.sort = "priority";
        } else if has("title") || has("name") || has("alphabetically") {
            q.sort = "title";
        } else if has("created") || has("newest") || has("recent") {
            q.sort = "created";
        }
    }
    if has("alphabetically") || has("a-z") {
        q.sort = "title";
    }
    if has("newest") || has("latest") || has("recent") {
        q.sort = "created";
        q.order = Some("desc");
    } else if has("oldest") {
        q.sort = "created";
        q.order = Some("asc");
    }
    let mut label = String::new();
    if q.overdue {
        label.push_str("overdue ");
    } else if q.status != "all" {
        label.push_str(q.status);
        label.push(' ');
    }
    if let Some(p) = &q.priority {
        label.push_str(&format!("{p}-priority "));
    }
    label.push_str("tasks");
    if let Some(t) = &q.tag {
        label.push_str(&format!(" tagged #{t}"));
    }
    if !when.is_empty() {
        label.push(' ');
        label.push_str(&when);
    }
    q.label = label;
    Intent::List(q)
}

fn delete(toks: &[&Tok], clock: &Clock) -> Intent {
    let words = norms(toks);
    // "remove the due date of/from X".
    if let Some(i) = words.iter().position(|w| ["due", "deadline", "date"].contains(w))
        && (words[i] != "due" || words.get(i + 1) == Some(&"date"))
    {
        let mut t = i + 1;
        while words.get(t).is_some_and(|w| ["date", "from", "of", "for", "on"].contains(w)) {
            t += 1;
        }
        let change = Change { due: DueChange::Clear, ..Change::default() };
        return act(Op::Update { change }, &toks[t..], "Which task's due date should I clear?");
    }
    let _ = clock;
    let core: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| !["all", "the", "my", "tasks", "task", "ones", "items", "of", "every", "them"].contains(w))
        .collect();
    if !core.is_empty() && core.iter().all(|w| ["completed", "done", "finished", "complete", "checked"].contains(w)) {
        return Intent::Act { op: Op::Delete, target: Target::Completed };
    }
    if (core.is_empty() || core == ["everything"]) && (words.contains(&"all") || words.contains(&"everything")) {
        return Intent::Act { op: Op::Delete, target: Target::All };
    }
    act(Op::Delete, toks, "Which task should I delete?")
}

fn rename(toks: &[&Tok]) -> Intent {
    let words = norms(toks);
    let mut options = Vec::new();
    for (i, w) in words.iter().enumerate() {
        if (*w == "to" || *w == "as" || *w == "into") && i > 0 && i + 1 < toks.len() {
            let new = raw_text(&toks[i + 1..]);
            if let (Some(t), false) = (target(&toks[..i]), new.is_empty()) {
                options.push((t, new));
            }
        }
    }
    if options.is_empty() {
        Intent::NeedMore("Rename which task to what? For example “rename buy milk to buy oat milk”.".into())
    } else {
        Intent::Rename(options)
    }
}

const CONNECTORS: &[&str] = &[
    "to", "for", "until", "till", "on", "by", "back", "forward", "out", "the", "of", "as", "a", "due", "date",
    "deadline", "is", "at", "be", "from",
];

/// The tokens not in `used`, without connector words at either end.
fn remaining<'a>(toks: &[&'a Tok], used: &[usize]) -> Vec<&'a Tok> {
    let mut kept: Vec<&Tok> = toks.iter().enumerate().filter(|(i, _)| !used.contains(i)).map(|(_, t)| *t).collect();
    while kept.first().is_some_and(|t| CONNECTORS.contains(&t.norm.as_str())) {
        kept.remove(0);
    }
    while kept.last().is_some_and(|t| CONNECTORS.contains(&t.norm.as_str())) {
        kept.pop();
    }
    kept
}

fn reschedule(toks: &[&Tok], clock: &Clock) -> Intent {
    let words: Vec<String> = toks.iter().map(|t| t.norm.clone()).collect();
    let Some(found) = dates::find(&words, clock) else {
        return Intent::NeedMore("When should it be due? For example “move the dentist to friday”.".into());
    };
    let Some(due) = found.rfc3339(clock) else {
        return Intent::NeedMore("I couldn't work out that date; try “next monday” or “jan 5 at 3pm”.".into());
    };
    let rest = remaining(toks, &found.used);
    let change = Change { due: DueChange::Set(due), ..Change::default() };
    act(Op::Update { change }, &rest, "Which task should I move?")
}

fn tag(toks: &[&Tok]) -> Intent {
    let words = norms(toks);
    let split = words.iter().position(|w| ["with", "as"].contains(w)).or_else(|| words.iter().position(|w| is_tag(w)));
    let Some(i) = split else {
        return Intent::NeedMore("Tag which task with what? For example “tag buy milk with #groceries”.".into());
    };
    let tags: Vec<String> = words[i..]
        .iter()
        .filter(|w| !["with", "as", "and", "tag", "tags"].contains(w))
        .map(|w| w.trim_start_matches('#').to_owned())
        .filter(|w| !w.is_empty())
        .collect();
    if tags.is_empty() {
        return Intent::NeedMore("Which tag should I add?".into());
    }
    act(Op::Update { change: Change { add_tags: tags, ..Change::default() } }, &toks[..i], "Which task should I tag?")
}

/// "mark X done", "mark X as not done", "mark X high priority", "mark X due friday".
fn mark(toks: &[&Tok], clock: &Clock) -> Intent {
    let words = norms(toks);
    let n = words.len();
    let ends = |tail: &[&str]| n > tail.len() && words[n - tail.len()..] == *tail;
    for (tail, op) in [
        (&["as", "not", "done"][..], Op::Reopen),
        (&["not", "done"][..], Op::Reopen),
        (&["as", "not", "completed"][..], Op::Reopen),
        (&["not", "completed"][..], Op::Reopen),
        (&["as", "undone"][..], Op::Reopen),
        (&["undone"][..], Op::Reopen),
        (&["as", "incomplete"][..], Op::Reopen),
        (&["incomplete"][..], Op::Reopen),
        (&["as", "pending"][..], Op::Reopen),
        (&["pending"][..], Op::Reopen),
        (&["as", "open"][..], Op::Reopen),
        (&["as", "todo"][..], Op::Reopen),
        (&["as", "done"][..], Op::Complete),
        (&["as", "complete"][..], Op::Complete),
        (&["as", "completed"][..], Op::Complete),
        (&["as", "finished"][..], Op::Complete),
        (&["done"][..], Op::Complete),
        (&["dne"][..], Op::Complete),
        (&["complete"][..], Op::Complete),
        (&["completed"][..], Op::Complete),
        (&["finished"][..], Op::Complete),
        (&["off"][..], Op::Complete),
        (&["as", "read"][..], Op::Complete),
    ] {
        if ends(tail) {
            return act(op, &toks[..n - tail.len()], "Which task?");
        }
    }
    if priority(&words).is_some()
        || dates::find(&words.iter().map(|w| w.to_string()).collect::<Vec<_>>(), clock).is_some()
    {
        return update(toks, clock);
    }
    // "mark X" alone means done.
    act(Op::Complete, toks, "Which task?")
}

/// "change/set/update/make …": priority, due date, description or title.
fn update(toks: &[&Tok], clock: &Clock) -> Intent {
    let words = norms(toks);
    if let Some((p, used)) = priority(&words).or_else(|| {
        // "set the priority of X to high": level and "priority" apart.
        let pi = words.iter().position(|w| matches!(*w, "priority" | "prio"))?;
        let li = words.iter().rposition(|w| matches!(*w, "high" | "low" | "medium" | "normal" | "urgent"))?;
        let level = match words[li] {
            "high" | "urgent" => "high",
            "low" => "low",
            _ => "medium",
        };
        Some((level.to_owned(), vec![pi, li]))
    }) {
        let rest = remaining(toks, &used);
        let change = Change { priority: Some(p), ..Change::default() };
        return act(Op::Update { change }, &rest, "Which task's priority should I change?");
    }
    let mentions_due = words.iter().any(|w| matches!(*w, "due" | "deadline"));
    let string_words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    if let Some(found) = dates::find(&string_words, clock)
        && (mentions_due || !words.contains(&"to") || found.used.iter().all(|&i| i > 0 && words[..i].contains(&"to")))
        && let Some(due) = found.rfc3339(clock)
    {
        let mut used = found.used.clone();
        used.extend(words.iter().enumerate().filter(|(_, w)| matches!(**w, "due" | "deadline")).map(|(i, _)| i));
        let rest = remaining(toks, &used);
        let change = Change { due: DueChange::Set(due), ..Change::default() };
        return act(Op::Update { change }, &rest, "Which task should I move?");
    }
    // "set the description of X to Y".
    if let Some(d) = words.iter().position(|w| matches!(*w, "description" | "notes" | "note" | "details"))
        && let Some(to) = words.iter().skip(d).position(|w| *w == "to").map(|k| k + d)
    {
        let text = raw_text(&toks[to + 1..]);
        let which = remaining(&toks[d + 1..to], &[]);
        let change = Change { description: Some(text), ..Change::default() };
        return act(Op::Update { change }, &which, "Which task's description should I set?");
    }
    // "change the title of X to Y", "change X to Y".
    let mut s = 0;
    while words.get(s).is_some_and(|w| ["the", "title", "name", "of", "for"].contains(w)) {
        s += 1;
    }
    if words[s..].contains(&"to") {
        return rename(&toks[s..]);
    }
    Intent::NeedMore(
        "What should I change? For example “set buy milk to high priority”, “move the dentist to friday” or “rename buy milk to buy oat milk”."
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tuesday 2026-03-10 12:00 UTC.
    fn clock() -> Clock {
        Clock::new(time::macros::datetime!(2026-03-10 12:00 UTC), "UTC")
    }

    fn p(s: &str) -> Intent {
        parse(s, &clock())
    }

    fn text(s: &str) -> Target {
        Target::Text(s.into())
    }

    fn added(s: &str) -> NewTask {
        match p(s) {
            Intent::Add(t) => t,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn typos_are_one_edit() {
        assert_eq!(edit_distance("compelte", "complete"), 1);
        assert_eq!(edit_distance("shwo", "show"), 1);
        assert_eq!(edit_distance("delet", "delete"), 1);
        assert_eq!(verb("delet"), Some(Verb::Delete));
        assert_eq!(verb("compelte"), Some(Verb::Complete));
        assert_eq!(verb("shwo"), Some(Verb::List));
        assert_eq!(verb("ad"), Some(Verb::Add));
        assert_eq!(verb("fine"), None);
        assert_eq!(verb("milk"), None);
    }

    #[test]
    fn adds_with_options() {
        let t = added("add buy milk tomorrow at 5pm, high priority #groceries");
        assert_eq!(t.title, "buy milk");
        assert_eq!(t.priority.as_deref(), Some("high"));
        assert_eq!(t.tags, vec!["groceries"]);
        assert_eq!(t.due_at.as_deref(), Some("2026-03-11T17:00:00Z"));
        assert_eq!(t.remind_at, None);
        let t = added("remind me to call mom on friday");
        assert_eq!(t.title, "call mom");
        assert_eq!(t.due_at.as_deref(), Some("2026-03-13T23:59:00Z"));
        assert_eq!(t.remind_at.as_deref(), Some("2026-03-13T09:00:00Z"));
        assert_eq!(added("add a task to Water the plants").title, "Water the plants");
        assert_eq!(added("please add \"Call Bob at 5\" tomorrow").title, "Call Bob at 5");
        assert_eq!(added("add buy 5 apples to my list").title, "buy 5 apples");
        let t = added("add Pay rent note: transfer from savings");
        assert_eq!((t.title.as_str(), t.description.as_deref()), ("Pay rent", Some("transfer from savings")));
        assert_eq!(added("I need to renew my passport").title, "renew my passport");
        assert_eq!(added("ad Buy bread").title, "Buy bread");
        assert_eq!(added("add Finish taxes, urgent").priority.as_deref(), Some("high"));
        assert!(matches!(p("add"), Intent::NeedMore(_)));
    }

    #[test]
    fn lists() {
        let Intent::List(q) = p("what's left for today?") else { panic!() };
        assert_eq!((q.status, q.due_before.as_deref()), ("pending", Some("2026-03-11T00:00:00Z")));
        let Intent::List(q) = p("show my high priority tasks") else { panic!() };
        assert_eq!((q.status, q.priority.as_deref()), ("pending", Some("high")));
        let Intent::List(q) = p("show completed tasks") else { panic!() };
        assert_eq!(q.status, "completed");
        let Intent::List(q) = p("list all tasks tagged work") else { panic!() };
        assert_eq!((q.status, q.tag.as_deref()), ("all", Some("work")));
        let Intent::List(q) = p("what's due tomorrow") else { panic!() };
        assert_eq!(q.due_after.as_deref(), Some("2026-03-11T00:00:00Z"));
        assert!(matches!(p("shwo my tasks"), Intent::List(_)));
    }

    #[test]
    fn references() {
        let r = |s: &str| target(&tokenize(s).iter().collect::<Vec<_>>());
        assert_eq!(r("the second one"), Some(Target::Positions(vec![2])));
        assert_eq!(r("#2"), Some(Target::Positions(vec![2])));
        assert_eq!(r("1 and 3"), Some(Target::Positions(vec![1, 3])));
        assert_eq!(r("the last one"), Some(Target::Last));
        assert_eq!(r("it"), Some(Target::It));
        assert_eq!(r("the report"), Some(text("report")));
        assert_eq!(r("Buy milk"), Some(text("Buy milk")));
        assert_eq!(r("the"), None);
    }

    #[test]
    fn actions() {
        let act = |s: &str| match p(s) {
            Intent::Act { op, target } => (op, target),
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(act("mark the second one done"), (Op::Complete, Target::Positions(vec![2])));
        assert_eq!(act("I finished the report"), (Op::Complete, text("report")));
        assert_eq!(act("compelte #3"), (Op::Complete, Target::Positions(vec![3])));
        assert_eq!(act("the report is done"), (Op::Complete, text("report")));
        assert_eq!(act("mark buy milk as not done"), (Op::Reopen, text("buy milk")));
        assert_eq!(act("delet the last one"), (Op::Delete, Target::Last));
        assert_eq!(act("delete all completed tasks"), (Op::Delete, Target::Completed));
        assert_eq!(act("clear completed"), (Op::Delete, Target::Completed));
        let (op, t) = act("move the dentist to next monday");
        assert_eq!(t, text("dentist"));
        assert_eq!(
            op,
            Op::Update { change: Change { due: DueChange::Set("2026-03-16T23:59:00Z".into()), ..Change::default() } }
        );
        let (op, t) = act("set the priority of buy milk to high");
        assert_eq!(t, text("buy milk"));
        assert_eq!(op, Op::Update { change: Change { priority: Some("high".into()), ..Change::default() } });
        let (op, t) = act("make the report low priority");
        assert_eq!(
            (op, t),
            (Op::Update { change: Change { priority: Some("low".into()), ..Change::default() } }, text("report"))
        );
        let (op, t) = act("remove the due date from taxes");
        assert_eq!(
            (op, t),
            (Op::Update { change: Change { due: DueChange::Clear, ..Change::default() } }, text("taxes"))
        );
        let (op, t) = act("tag buy milk with #groceries");
        assert_eq!(
            (op, t),
            (
                Op::Update { change: Change { add_tags: vec!["groceries".into()], ..Change::default() } },
                text("buy milk")
            )
        );
    }

    #[test]
    fn renames_offer_every_split() {
        let Intent::Rename(opts) = p("rename buy milk to buy oat milk") else { panic!() };
        assert_eq!(opts[0], (text("buy milk"), "buy oat milk".to_owned()));
        let Intent::Rename(opts) = p("change the title of go to gym to go to pool") else { panic!() };
        assert!(opts.contains(&(text("go to gym"), "go to pool".to_owned())));
    }

    #[test]
    fn small_talk_and_answers() {
        assert_eq!(p("hi"), Intent::Greeting);
        assert_eq!(p("Hello there!"), Intent::Greeting);
        assert_eq!(p("thanks!"), Intent::Thanks);
        assert_eq!(p("help"), Intent::Help);
        assert_eq!(p("yes"), Intent::Yes);
        assert_eq!(p("yes please"), Intent::Yes);
        assert_eq!(p("no"), Intent::No);
        assert_eq!(p("undo"), Intent::Undo);
        assert_eq!(p("undo that"), Intent::Undo);
        assert_eq!(p("fly me to the moon"), Intent::Unknown);
        assert_eq!(p("   "), Intent::Empty);
    }
}
