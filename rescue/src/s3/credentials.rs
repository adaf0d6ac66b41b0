//! Access keys for the store: from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, and
//! `AWS_SESSION_TOKEN` for temporary STS/SSO credentials) or from a file on the boot medium, in the AWS
//! shared-credentials form (`aws_access_key_id = …`, `aws_session_token = …`) or as
//! `AWS_ACCESS_KEY_ID=…` lines. The secret and the token are never part of an error message.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::sigv4::Credentials;

/// Errors loading credentials.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("reading credentials file {path}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} has no access key id and secret access key")]
    IncompleteFile { path: PathBuf },
    #[error(
        "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give --credentials FILE"
    )]
    MissingEnvironment,
}

/// Parses a credentials file's text; the first profile (or the key=value lines) wins.
pub fn parse(text: &str) -> Option<Credentials> {
    let mut id = None;
    let mut secret = None;
    let mut token = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') && id.is_some() && secret.is_some() {
            break;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').trim_matches('\'').to_owned();
        match k.trim().to_ascii_lowercase().trim_start_matches("export ") {
            "aws_access_key_id" => id = Some(v),
            "aws_secret_access_key" => secret = Some(v),
            // `aws_security_token` is the older name the AWS CLI still reads.
            "aws_session_token" | "aws_security_token" => token = Some(v),
            _ => {}
        }
    }
    match (id, secret) {
        (Some(i), Some(s)) if !i.is_empty() && !s.is_empty() => {
            Some(with_token(Credentials::new(i, s), token))
        }
        _ => None,
    }
}

fn with_token(c: Credentials, token: Option<String>) -> Credentials {
    match token.filter(|t| !t.is_empty()) {
        Some(t) => c.with_session_token(t),
        None => c,
    }
}

/// Loads a credentials file; the flag is true when other users may read it (the caller warns).
pub fn load_file(path: &Path) -> Result<(Credentials, bool), CredentialsError> {
    let read = |source| CredentialsError::ReadFile {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    let text = std::fs::read_to_string(path).map_err(read)?;
    let creds = parse(&text).ok_or_else(|| CredentialsError::IncompleteFile {
        path: path.to_owned(),
    })?;
    Ok((creds, meta.permissions().mode() & 0o004 != 0))
}

/// Credentials from the environment.
pub fn from_env() -> Result<Credentials, CredentialsError> {
    match (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Ok(i), Ok(s)) if !i.is_empty() && !s.is_empty() => Ok(with_token(
            Credentials::new(i, s),
            std::env::var("AWS_SESSION_TOKEN").ok(),
        )),
        _ => Err(CredentialsError::MissingEnvironment),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_file_forms_parse() {
        let ini = "[default]\naws_access_key_id = AKID\naws_secret_access_key = s3cr3t\n[other]\naws_access_key_id = X\n";
        assert_eq!(parse(ini).unwrap().access_key, "AKID");
        let env = "# comment\nexport AWS_ACCESS_KEY_ID=\"AK2\"\nAWS_SECRET_ACCESS_KEY=sec\n";
        assert_eq!(parse(env).unwrap().access_key, "AK2");
        assert!(parse("aws_access_key_id = only\n").is_none());
        assert_eq!(parse(ini).unwrap().session_token(), None);
    }

    #[test]
    fn session_tokens_of_temporary_credentials_are_kept() {
        let ini = "[default]\naws_access_key_id = ASIA1\naws_secret_access_key = s\naws_session_token = IQoJb3JpZ2luX2Vj/+==\n";
        assert_eq!(
            parse(ini).unwrap().session_token(),
            Some("IQoJb3JpZ2luX2Vj/+==")
        );
        let env = "AWS_ACCESS_KEY_ID=ASIA2\nAWS_SECRET_ACCESS_KEY=s\nAWS_SESSION_TOKEN='tok'\n";
        assert_eq!(parse(env).unwrap().session_token(), Some("tok"));
        // A token in a later profile is not ours.
        let other = "[default]\naws_access_key_id = A\naws_secret_access_key = s\n[p]\naws_session_token = t\n";
        assert_eq!(parse(other).unwrap().session_token(), None);
    }

    #[test]
    fn world_readable_files_are_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("creds");
        std::fs::write(&p, "aws_access_key_id=a\naws_secret_access_key=b\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_file(&p).unwrap().1);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(!load_file(&p).unwrap().1);
    }
}
