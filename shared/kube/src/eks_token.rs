//! The bearer token an EKS API server accepts, made exactly as `aws-iam-authenticator`
//! (and `aws eks get-token`) make it: a SigV4-presigned STS `GetCallerIdentity` GET URL
//! whose signed headers include `x-k8s-aws-id: <cluster name>`, base64url-encoded
//! without padding behind the `k8s-aws-v1.` prefix.
//!
//! The verifier (kubernetes-sigs/aws-iam-authenticator `pkg/token/token.go`, `Verify`)
//! checks: the prefix; at most 4 KiB; scheme https, host `sts.<region>.amazonaws.com`
//! (or `sts.amazonaws.com`), path `/`; only whitelisted query parameters, each once;
//! `Action=GetCallerIdentity`; `X-Amz-SignedHeaders` naming `x-k8s-aws-id`;
//! `X-Amz-Expires` within 0..=900; `X-Amz-Date` no older than 15 minutes. It then
//! replays the URL to STS with the cluster header, so the signature must be STS's.
//! STS ignores `X-Amz-Expires` (the authenticator sends 60) and honours a presigned
//! `GetCallerIdentity` for 15 minutes after `X-Amz-Date`; the authenticator hands the
//! token out as valid for 14 of them (`presignedURLExpiration - 1*time.Minute`), as
//! [`EksToken::expires_at`] does, so a cached client is rebuilt before the server
//! starts answering 401.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use thiserror::Error;

/// The token's prefix: version 1 of the authenticator's format.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// The header that binds the token to one cluster.
pub const CLUSTER_ID_HEADER: &str = "x-k8s-aws-id";
/// What the authenticator puts in `X-Amz-Expires` (STS ignores it; verifiers of 0.3.0
/// and older want a value there).
const PRESIGN_EXPIRES: Duration = Duration::from_secs(60);
/// The verifier's limit on a token's length.
const MAX_TOKEN_BYTES: usize = 4096;
/// How long STS honours the presigned URL after `X-Amz-Date`.
const PRESIGNED_URL_VALIDITY: Duration = Duration::from_secs(15 * 60);
/// The authenticator's cushion before that end.
const EXPIRY_CUSHION: Duration = Duration::from_secs(60);

/// A bearer token for one EKS cluster, and when to stop using it.
#[derive(Clone, PartialEq, Eq)]
pub struct EksToken {
    pub token: String,
    /// Signing time + 15 min − 1 min, as aws-iam-authenticator reports it.
    pub expires_at: SystemTime,
}

impl std::fmt::Debug for EksToken {
    /// The token is a credential for the cluster: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EksToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Why a token could not be made. Messages never carry the credentials.
#[derive(Debug, Error)]
pub enum TokenError {
    /// The region or cluster name cannot appear in a host name or header.
    #[error("invalid {what}: {value:?}")]
    InvalidInput { what: &'static str, value: String },
    /// The verifier refuses tokens over 4 KiB (`maxTokenLenBytes`); a very long
    /// session token can get there.
    #[error("the token is {0} bytes; the EKS verifier refuses more than 4096")]
    TooLong(usize),
    /// aws-sigv4 refused to sign (its message names the field, not the secret).
    #[error("signing the STS GetCallerIdentity request: {0}")]
    Signing(String),
}

/// The STS host the authenticator's verifier accepts for `region`: the regional
/// endpoint, in the China partition's domain for `cn-*` regions.
pub fn sts_host(region: &str) -> String {
    if region.starts_with("cn-") {
        format!("sts.{region}.amazonaws.com.cn")
    } else {
        format!("sts.{region}.amazonaws.com")
    }
}

/// Makes the token `aws-iam-authenticator token -i <cluster_name>` would make with
/// `creds` in `region` at `now`. Pure: no I/O, the clock is an argument.
pub fn token(
    creds: &Credentials,
    region: &str,
    cluster_name: &str,
    now: SystemTime,
) -> Result<EksToken, TokenError> {
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(TokenError::InvalidInput {
            what: "region",
            value: region.to_owned(),
        });
    }
    if cluster_name.is_empty() || http::HeaderValue::from_str(cluster_name).is_err() {
        return Err(TokenError::InvalidInput {
            what: "cluster name",
            value: cluster_name.to_owned(),
        });
    }
    let url = presigned_url(creds, region, cluster_name, now)?;
    let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(url.as_bytes()));
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLong(token.len()));
    }
    Ok(EksToken {
        token,
        expires_at: now + PRESIGNED_URL_VALIDITY - EXPIRY_CUSHION,
    })
}

/// The presigned `GetCallerIdentity` URL: the cluster header is signed (listed in
/// `X-Amz-SignedHeaders`) but travels as a header when the verifier replays it, never
/// as a query parameter (the verifier refuses unknown parameters).
fn presigned_url(
    creds: &Credentials,
    region: &str,
    cluster_name: &str,
    now: SystemTime,
) -> Result<String, TokenError> {
    let base = format!(
        "https://{}/?Action=GetCallerIdentity&Version=2011-06-15",
        sts_host(region)
    );
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(PRESIGN_EXPIRES);
    let identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| TokenError::Signing(e.to_string()))?
        .into();
    let headers = [(CLUSTER_ID_HEADER, cluster_name)];
    let request = SignableRequest::new(
        "GET",
        base.as_str(),
        headers.iter().copied(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| TokenError::Signing(e.to_string()))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| TokenError::Signing(e.to_string()))?
        .into_parts();
    let mut url = base;
    for (name, value) in instructions.params() {
        url.push('&');
        url.push_str(name);
        url.push('=');
        url.push_str(&query_escape(value));
    }
    Ok(url)
}

/// Percent-encodes a query value as SigV4 does (RFC 3986 unreserved characters kept),
/// so the URL decodes to exactly the values that were signed.
fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::{Digest, Sha256};
    use std::collections::BTreeMap;

    // 2025-01-02T03:04:05Z
    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_787_045)
    }

    fn creds(session: Option<&str>) -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session.map(str::to_owned),
            None,
            "test",
        )
    }

    /// The URL inside a token, split into host, path and decoded query parameters
    /// (in the order they appear).
    fn decode(token: &str) -> (String, String, Vec<(String, String)>) {
        let b64 = token.strip_prefix(TOKEN_PREFIX).expect("prefix");
        assert!(!b64.contains('='), "padding in {b64}");
        assert!(!b64.contains('+') && !b64.contains('/'), "not base64url");
        let url = String::from_utf8(URL_SAFE_NO_PAD.decode(b64).expect("base64url")).expect("utf8");
        let rest = url.strip_prefix("https://").expect("https");
        let (host, rest) = rest.split_once('/').expect("path");
        let (path, query) = rest.split_once('?').expect("query");
        let params = query
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("k=v");
                (unescape(k), unescape(v))
            })
            .collect();
        (host.to_owned(), format!("/{path}"), params)
    }

    fn unescape(s: &str) -> String {
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("hex"));
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).expect("utf8")
    }

    fn map(params: &[(String, String)]) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        for (k, v) in params {
            assert!(m.insert(k.clone(), v.clone()).is_none(), "duplicate {k}");
        }
        m
    }

    #[test]
    fn token_is_the_authenticators_format() {
        let t = token(&creds(None), "eu-west-1", "prod", at()).expect("token");
        assert!(t.token.starts_with("k8s-aws-v1."));
        assert!(t.token.len() <= 4096);
        assert_eq!(t.expires_at, at() + Duration::from_secs(14 * 60));
        let (host, path, params) = decode(&t.token);
        assert_eq!(host, "sts.eu-west-1.amazonaws.com");
        assert_eq!(path, "/");
        let q = map(&params);
        let allowed = [
            "action",
            "version",
            "x-amz-algorithm",
            "x-amz-credential",
            "x-amz-date",
            "x-amz-expires",
            "x-amz-security-token",
            "x-amz-signature",
            "x-amz-signedheaders",
        ];
        for k in q.keys() {
            assert!(
                allowed.contains(&k.to_lowercase().as_str()),
                "{k} not whitelisted"
            );
        }
        assert_eq!(q["Action"], "GetCallerIdentity");
        assert_eq!(q["Version"], "2011-06-15");
        assert_eq!(q["X-Amz-Algorithm"], "AWS4-HMAC-SHA256");
        assert_eq!(
            q["X-Amz-Credential"],
            "AKIDEXAMPLE/20250102/eu-west-1/sts/aws4_request"
        );
        assert_eq!(q["X-Amz-Date"], "20250102T030405Z");
        assert_eq!(q["X-Amz-Expires"], "60");
        let signed: Vec<&str> = q["X-Amz-SignedHeaders"].split(';').collect();
        assert!(signed.contains(&"host") && signed.contains(&"x-k8s-aws-id"));
        assert!(!q.keys().any(|k| k.eq_ignore_ascii_case("x-k8s-aws-id")));
        assert!(!q.contains_key("X-Amz-Security-Token"));
        let sig = &q["X-Amz-Signature"];
        assert_eq!(sig.len(), 64);
        assert!(sig.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn session_credentials_carry_their_token() {
        let t = token(&creds(Some("FwoG/session+token=")), "us-east-1", "c", at()).expect("token");
        let q = map(&decode(&t.token).2);
        assert_eq!(q["X-Amz-Security-Token"], "FwoG/session+token=");
    }

    #[test]
    fn the_signature_is_sigv4_of_the_canonical_request() {
        for session in [None, Some("FwoG/session+token=")] {
            let c = creds(session);
            let t = token(&c, "eu-west-1", "prod", at()).expect("token");
            let (host, _, params) = decode(&t.token);
            let q = map(&params);
            assert_eq!(
                q["X-Amz-Signature"],
                expected_signature(&c, &host, &params, "prod")
            );
        }
    }

    #[test]
    fn the_signature_depends_on_the_cluster_and_is_deterministic() {
        let sig = |cluster: &str| {
            let t = token(&creds(None), "eu-west-1", cluster, at()).expect("token");
            map(&decode(&t.token).2)["X-Amz-Signature"].clone()
        };
        assert_eq!(sig("a"), sig("a"));
        assert_ne!(sig("a"), sig("b"));
    }

    #[test]
    fn a_token_over_4_kib_is_refused() {
        let e = token(&creds(Some(&"x".repeat(3000))), "eu-west-1", "c", at()).expect_err("long");
        assert!(matches!(e, TokenError::TooLong(n) if n > 4096), "{e}");
        assert!(!e.to_string().contains("xxx"));
    }

    #[test]
    fn china_regions_use_their_partitions_domain() {
        let t = token(&creds(None), "cn-north-1", "c", at()).expect("token");
        assert_eq!(decode(&t.token).0, "sts.cn-north-1.amazonaws.com.cn");
    }

    #[test]
    fn bad_inputs_are_refused_without_echoing_credentials() {
        let e = token(&creds(None), "eu west", "c", at()).expect_err("region");
        assert!(e.to_string().contains("region"));
        let e = token(&creds(None), "eu-west-1", "a\nb", at()).expect_err("cluster");
        assert!(!e.to_string().contains("wJalr"));
    }

    /// SigV4 computed by hand from the spec
    /// (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html):
    /// the canonical query holds every parameter but the signature, sorted and
    /// RFC 3986-encoded; the signed headers are host and x-k8s-aws-id; the payload
    /// is the hash of the empty body.
    fn expected_signature(
        c: &Credentials,
        host: &str,
        params: &[(String, String)],
        cluster: &str,
    ) -> String {
        let mut query: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k != "X-Amz-Signature")
            .map(|(k, v)| (query_escape(k), query_escape(v)))
            .collect();
        query.sort();
        let canonical_query = query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let canonical_request = format!(
            "GET\n/\n{canonical_query}\nhost:{host}\nx-k8s-aws-id:{cluster}\n\nhost;x-k8s-aws-id\n{}",
            hex(&Sha256::digest(b""))
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n20250102T030405Z\n20250102/eu-west-1/sts/aws4_request\n{}",
            hex(&Sha256::digest(canonical_request.as_bytes()))
        );
        let k_date = hmac(
            format!("AWS4{}", c.secret_access_key()).as_bytes(),
            b"20250102",
        );
        let k_region = hmac(&k_date, b"eu-west-1");
        let k_service = hmac(&k_region, b"sts");
        let k_signing = hmac(&k_service, b"aws4_request");
        hex(&hmac(&k_signing, string_to_sign.as_bytes()))
    }

    fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
