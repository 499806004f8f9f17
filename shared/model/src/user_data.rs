//! What cloud-init makes of a piece of user data, the facts both validation and the
//! nodeadm renderer (`capstan_reconcile::bootstrap`) rely on: whether it is already a
//! MIME document, and which content type a part of it gets from how it starts.

/// Whether user data is already a MIME document, as cloud-init decides it: a
/// `MIME-Version:` header (any case) within its first 4096 bytes (cloud-init
/// `user_data.py`, `convert_string`).
pub fn is_mime(data: &str) -> bool {
    const HEADER: &[u8] = b"mime-version:";
    let head = &data.as_bytes()[..data.len().min(4096)];
    head.windows(HEADER.len())
        .any(|w| w.eq_ignore_ascii_case(HEADER))
}

/// The content type cloud-init gives a part from how it starts (cloud-init
/// `handlers/__init__.py`: `INCLUSION_TYPES_MAP` and `type_from_starts_with`, leading
/// white space skipped, case ignored, longest prefix first). None where cloud-init
/// would leave it `text/plain` and do nothing with it but log a warning.
pub fn cloud_init_content_type(data: &str) -> Option<&'static str> {
    // Longest first: "#cloud-config-archive" before "#cloud-config", "#include-once"
    // before "#include".
    const PREFIXES: [(&str, &str); 9] = [
        ("#cloud-config-archive", "text/cloud-config-archive"),
        ("#cloud-config-jsonp", "text/cloud-config-jsonp"),
        ("## template: jinja", "text/jinja2"),
        ("#cloud-boothook", "text/cloud-boothook"),
        ("#include-once", "text/x-include-once-url"),
        ("#cloud-config", "text/cloud-config"),
        ("#part-handler", "text/part-handler"),
        ("#include", "text/x-include-url"),
        ("#!", "text/x-shellscript"),
    ];
    let start: String = data
        .trim_start()
        .chars()
        .take(24)
        .flat_map(char::to_lowercase)
        .collect();
    PREFIXES
        .iter()
        .find(|(prefix, _)| start.starts_with(prefix))
        .map(|(_, content_type)| *content_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_follow_cloud_init() {
        assert_eq!(
            cloud_init_content_type("#!/bin/bash\n"),
            Some("text/x-shellscript")
        );
        assert_eq!(
            cloud_init_content_type("  #Cloud-Config\n"),
            Some("text/cloud-config")
        );
        assert_eq!(
            cloud_init_content_type("#cloud-config-archive\n"),
            Some("text/cloud-config-archive")
        );
        assert_eq!(
            cloud_init_content_type("#include-once\nhttps://x\n"),
            Some("text/x-include-once-url")
        );
        assert_eq!(cloud_init_content_type("echo hi\n"), None);
        assert_eq!(cloud_init_content_type(""), None);
    }

    #[test]
    fn mime_is_recognised_as_cloud_init_does() {
        assert!(is_mime(
            "Content-Type: multipart/mixed\nMIME-Version: 1.0\n"
        ));
        assert!(is_mime("mime-version: 1.0\n"));
        assert!(!is_mime("#!/bin/sh\necho MIME\n"));
    }
}
