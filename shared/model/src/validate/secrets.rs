//! The user-data secret scanner: lines holding an AWS access key id, a private key, or
//! a password, token or key set to a literal value, since user data is readable by
//! anyone who can describe the instance.

pub(super) const SECRET_HINT: &str = "fetch secrets at boot from SSM Parameter Store or Secrets Manager; \
user data is readable by anyone who can describe the instance";

/// Lines of user data that look like they carry a secret. The secret itself is never
/// repeated in the message.
pub fn secrets_in(data: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, line) in data.lines().enumerate() {
        let n = i + 1;
        if has_access_key_id(line) {
            found.push(format!("line {n} contains an AWS access key id"));
        }
        if line.contains("-----BEGIN ") && line.contains("PRIVATE KEY-----") {
            found.push(format!("line {n} begins a private key"));
        }
        if let Some(name) = secret_assignment(line) {
            found.push(format!("line {n} sets {name} to a literal value"));
        }
    }
    found
}

/// `AKIA` or `ASIA` and 16 uppercase letters or digits, standing alone.
fn has_access_key_id(line: &str) -> bool {
    let bytes = line.as_bytes();
    let key_char = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit();
    (0..bytes.len()).any(|start| {
        let rest = &bytes[start..];
        (rest.starts_with(b"AKIA") || rest.starts_with(b"ASIA"))
            && rest.len() >= 20
            && rest[4..20].iter().all(|b| key_char(*b))
            && rest.get(20).is_none_or(|b| !key_char(*b))
            && (start == 0 || !bytes[start - 1].is_ascii_alphanumeric())
    })
}

/// `password=...`, `DB_PASSWORD: ...`, `--token abc`: a secret-named key given a literal.
fn secret_assignment(line: &str) -> Option<String> {
    let ident_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    for (pos, delimiter) in line.char_indices().filter(|(_, c)| matches!(c, '=' | ':')) {
        let before = line[..pos].trim_end();
        let start = before
            .char_indices()
            .rev()
            .take_while(|(_, c)| ident_char(*c))
            .last()
            .map_or(before.len(), |(i, _)| i);
        let name = before[start..].trim_start_matches('-');
        if delimiter == ':' && line[pos + 1..].starts_with("//") {
            continue; // a URL
        }
        if is_secret_name(name) && is_literal(&line[pos + 1..]) {
            return Some(name.to_string());
        }
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    for pair in words.windows(2) {
        if let Some(flag) = pair[0].strip_prefix("--")
            && !flag.contains('=')
            && is_secret_name(flag)
            && is_literal(pair[1])
        {
            return Some(pair[0].to_string());
        }
    }
    None
}

/// Whether a key's last word names a secret (`DB_PASSWORD`, `apiKey`, `auth-token`).
fn is_secret_name(name: &str) -> bool {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if matches!(c, '_' | '-' | '.') {
            words.push(std::mem::take(&mut word));
            previous_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && previous_lower {
            words.push(std::mem::take(&mut word));
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        word.push(c.to_ascii_lowercase());
    }
    words.push(word);
    words.retain(|w| !w.is_empty());
    let last = words.last().map(String::as_str);
    let last_two = match words.as_slice() {
        [.., a, b] => Some((a.as_str(), b.as_str())),
        _ => None,
    };
    matches!(
        last,
        Some("password" | "passwd" | "secret" | "token" | "apikey" | "credentials")
    ) || matches!(
        last_two,
        Some(("api" | "secret" | "private" | "access" | "auth", "key"))
            | Some(("client" | "shared", "secret"))
    )
}

/// A value written out, not fetched: not empty, not a variable or command substitution,
/// not a template placeholder.
fn is_literal(value: &str) -> bool {
    let v = value.trim().trim_matches(|c| c == '"' || c == '\'').trim();
    !(v.is_empty()
        || v.starts_with('$')
        || v.starts_with("{{")
        || v.starts_with('<')
        || v.starts_with('#')
        || matches!(v, "|" | ">" | "~" | "null" | "{}" | "[]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harmless_boot_scripts_are_not_secrets() {
        let script = "\
#!/bin/bash
set -euo pipefail
TOKEN=$(curl -sX PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 21600')
DB_PASSWORD=\"$(aws ssm get-parameter --name /demo/db --with-decryption --query Parameter.Value --output text)\"
aws secretsmanager get-secret-value --secret-id demo/join --query SecretString
export API_TOKEN=${API_TOKEN}
password: {{ db_password }}
chpasswd: {expire: false}
kubeadm join --token-ttl 0 --discovery-token-ca-cert-hash sha256:abc
url: https://example.com:443/token
";
        assert_eq!(secrets_in(script), Vec::<String>::new());
    }

    #[test]
    fn literal_secrets_are_found_by_line() {
        let script = "\
#cloud-config
write_files:
  - content: |
      clientSecret: s3cr3t
runcmd:
  - kubeadm join 10.0.0.1:6443 --token abcdef.0123456789abcdef
  - export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI
  - echo apiKey=123
";
        assert_eq!(
            secrets_in(script),
            [
                "line 4 sets clientSecret to a literal value",
                "line 6 sets --token to a literal value",
                "line 7 sets AWS_SECRET_ACCESS_KEY to a literal value",
                "line 8 sets apiKey to a literal value",
            ]
        );
    }
}
