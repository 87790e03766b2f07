//! Input rules: names, emails, the password policy, and the "one active admin remains" rule.

use flotilla_runtime::FieldError;
use flotilla_runtime::auth::Role;

use crate::model::{AdminChange, UserRecord};

pub const NAME_MAX_CHARS: usize = 100;
pub const EMAIL_MAX_CHARS: usize = 254;
pub const PASSWORD_MIN_CHARS: usize = 8;
pub const PASSWORD_MAX_CHARS: usize = 128;

/// The most common passwords (one per line, lowercase), refused case-insensitively.
const COMMON_PASSWORDS: &str = include_str!("common_passwords.txt");

/// Trims and checks a display name.
pub fn normalize_name(raw: &str) -> Result<String, FieldError> {
    let name = raw.trim();
    let chars = name.chars().count();
    if chars == 0 {
        return Err(FieldError::new("name", "must not be empty"));
    }
    if chars > NAME_MAX_CHARS {
        return Err(FieldError::new("name", format!("must be at most {NAME_MAX_CHARS} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(FieldError::new("name", "must not contain control characters"));
    }
    Ok(name.to_owned())
}

/// Trims and lowercases an email address; the result is the account key.
pub fn normalize_email_key(raw: &str) -> String {
    raw.trim().to_lowercase()
}

/// Normalises and checks an email address: one `@`, a non-empty local part, a dotted domain,
/// no whitespace, at most 254 characters.
pub fn normalize_email(raw: &str) -> Result<String, FieldError> {
    let email = normalize_email_key(raw);
    let bad = |detail: &str| Err(FieldError::new("email", detail));
    if email.is_empty() {
        return bad("must not be empty");
    }
    if email.chars().count() > EMAIL_MAX_CHARS {
        return bad("must be at most 254 characters");
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain whitespace");
    }
    let Some((local, domain)) = email.split_once('@') else {
        return bad("must be an email address like name@example.com");
    };
    if domain.contains('@') {
        return bad("must contain exactly one @");
    }
    if local.is_empty() {
        return bad("must have a name before the @");
    }
    let labels_ok = domain.split('.').all(|l| !l.is_empty());
    if !domain.contains('.') || !labels_ok {
        return bad("must have a domain like example.com after the @");
    }
    Ok(email)
}

/// The password policy: 8–128 characters, not a common password, not the email or its local part.
/// `email` is the normalised email of the account (or empty when unknown).
pub fn check_password(password: &str, email: &str) -> Result<(), FieldError> {
    let bad = |detail: &str| Err(FieldError::new("password", detail));
    let chars = password.chars().count();
    if chars < PASSWORD_MIN_CHARS {
        return bad("must be at least 8 characters");
    }
    if chars > PASSWORD_MAX_CHARS {
        return bad("must be at most 128 characters");
    }
    let lower = password.to_lowercase();
    if is_common_password(&lower) {
        return bad("is one of the most common passwords; choose another");
    }
    if !email.is_empty() {
        let local = email.split('@').next().unwrap_or_default();
        if lower == email || lower == local {
            return bad("must not be your email address");
        }
    }
    Ok(())
}

fn is_common_password(lowercase: &str) -> bool {
    COMMON_PASSWORDS.lines().map(str::trim).any(|p| !p.is_empty() && p == lowercase)
}

/// Whether applying `change` to `user` would leave no active administrator, given how many
/// *other* active administrators exist.
pub fn leaves_no_admin(user: &UserRecord, change: AdminChange, other_active_admins: i64) -> bool {
    let is_active_admin = user.role == Role::Admin && user.active;
    let stays_active_admin = change.role.unwrap_or(user.role) == Role::Admin && change.active.unwrap_or(user.active);
    is_active_admin && !stays_active_admin && other_active_admins == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(normalize_name("  Ada Lovelace ").unwrap(), "Ada Lovelace");
        assert_eq!(normalize_name("   ").unwrap_err().pointer, "#/name");
        assert!(normalize_name(&"é".repeat(100)).is_ok());
        assert!(normalize_name(&"é".repeat(101)).is_err());
        assert!(normalize_name("a\u{0}b").is_err());
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(normalize_email("  Ada@Example.COM ").unwrap(), "ada@example.com");
        for bad in
            ["", "ada", "@example.com", "ada@example", "ada@@example.com", "a@b@c.com", "a b@c.com", "a@.com", "a@b."]
        {
            assert!(normalize_email(bad).is_err(), "{bad:?} should be refused");
        }
        let long = format!("{}@example.com", "a".repeat(243));
        assert_eq!(long.len(), 255);
        assert!(normalize_email(&long).is_err());
        assert!(normalize_email(&long[1..]).is_ok());
    }

    #[test]
    fn password_policy() {
        assert!(check_password("correct horse battery", "ada@example.com").is_ok());
        assert!(check_password("short", "").is_err());
        assert!(check_password(&"x".repeat(129), "").is_err());
        assert!(check_password(&"x".repeat(128), "").is_ok());
        assert!(check_password("password", "").is_err());
        assert!(check_password("PassWord123", "").is_err(), "common passwords are compared case-insensitively");
        assert!(check_password("Ada.Lovelace@example.com", "ada.lovelace@example.com").is_err());
        assert!(check_password("ada.lovelace", "ada.lovelace@example.com").is_err());
        assert_eq!(check_password("12345678", "").unwrap_err().pointer, "#/password");
    }

    #[test]
    fn the_common_password_list_is_substantial_and_lowercase() {
        let list: Vec<&str> = COMMON_PASSWORDS.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        assert!(list.len() >= 190, "{} entries", list.len());
        assert!(list.iter().all(|p| *p == p.to_lowercase()));
    }

    #[test]
    fn the_last_active_admin_cannot_be_removed() {
        let admin = UserRecord {
            id: "a".into(),
            name: "A".into(),
            email: "a@x.io".into(),
            password_hash: String::new(),
            role: Role::Admin,
            active: true,
            created_at: 0,
            updated_at: 0,
        };
        let demote = AdminChange { role: Some(Role::User), active: None };
        let disable = AdminChange { role: None, active: Some(false) };
        assert!(leaves_no_admin(&admin, demote, 0));
        assert!(leaves_no_admin(&admin, disable, 0));
        assert!(!leaves_no_admin(&admin, demote, 1));
        assert!(!leaves_no_admin(&admin, AdminChange { role: Some(Role::Admin), active: Some(true) }, 0));
        let user = UserRecord { role: Role::User, ..admin };
        assert!(!leaves_no_admin(&user, disable, 0));
    }
}
