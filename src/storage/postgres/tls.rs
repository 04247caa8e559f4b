//! TLS to PostgreSQL: `storage.ssl` (`true`, or node-postgres's object
//! `{ rejectUnauthorized, ca, cert, key }`) and a connection string's
//! `sslmode` (libpq's modes plus node-postgres's `no-verify`), turned into a
//! rustls client config. Managed databases (Heroku, RDS with its CA bundle,
//! self-signed servers) need more than "verify against the public roots",
//! which was all jobwerk did before.
//!
//! The modes, and what is checked:
//! - `VerifyFull` (`ssl: true`, `rejectUnauthorized` true, `verify-full`):
//!   the chain against `ca` (or the Mozilla roots when no `ca`) and the host
//!   name.
//! - `VerifyCa` (`verify-ca`, or `require` with a `ca`, as libpq): the chain,
//!   not the host name.
//! - `NoVerify` (`rejectUnauthorized: false`, `no-verify`, `require` without
//!   a `ca`, `prefer`): encrypted, the certificate NOT verified: anyone on the
//!   path can impersonate the server. The handshake's signatures are still
//!   checked. See [`DangerousAcceptAnyCertificate`].
//!
//! Certificates and keys are validated when the config is parsed, so a bad
//! one is an `ERR_INVALID_CONFIG` naming its key; their contents are never
//! printed.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use serde_json::Value;

use crate::error::{Error, Result};

/// What is verified of the server's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVerify {
  /// Chain and host name.
  Full,
  /// Chain only (libpq's `verify-ca`).
  Ca,
  /// Nothing (dangerous; still encrypted).
  None,
}

/// TLS settings beyond on/off (`PgConfig::ssl`).
#[derive(Clone, PartialEq, Eq)]
pub struct TlsOptions {
  pub verify: TlsVerify,
  /// `sslmode=prefer`: TLS if the server offers it, else plain TCP.
  pub prefer: bool,
  /// PEM: the CAs trusted instead of the public roots.
  pub ca: Option<String>,
  /// PEM: client certificate (chain) and its key.
  pub cert: Option<String>,
  pub key: Option<String>,
}

impl Default for TlsOptions {
  fn default() -> Self {
    TlsOptions {
      verify: TlsVerify::Full,
      prefer: false,
      ca: None,
      cert: None,
      key: None,
    }
  }
}

impl std::fmt::Debug for TlsOptions {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("TlsOptions")
      .field("verify", &self.verify)
      .field("prefer", &self.prefer)
      .field("ca", &self.ca.as_ref().map(|_| "<set>"))
      .field("cert", &self.cert.as_ref().map(|_| "<set>"))
      .field("key", &self.key.as_ref().map(|_| "<set>"))
      .finish()
  }
}

fn bad(key: &str, msg: impl std::fmt::Display) -> Error {
  Error::InvalidConfig(format!("storage.{key} {msg}"))
}

/// A connection string's `sslmode`, removed from it (the driver knows only
/// disable/prefer/require). The string is given back without it.
pub(crate) fn take_sslmode(s: &str) -> Result<(String, Option<String>)> {
  let mut mode = None;
  let lower = s.trim_start().to_ascii_lowercase();
  let out = if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
    match s.split_once('?') {
      None => s.to_string(),
      Some((base, query)) => {
        let kept: Vec<&str> = query
          .split('&')
          .filter(|p| match p.split_once('=') {
            Some(("sslmode", v)) => {
              mode = Some(v.to_string());
              false
            }
            _ => true,
          })
          .collect();
        if kept.is_empty() {
          base.to_string()
        } else {
          format!("{base}?{}", kept.join("&"))
        }
      }
    }
  } else {
    // key=value form: `sslmode` values never need quoting.
    let kept: Vec<&str> = s
      .split_whitespace()
      .filter(|p| match p.split_once('=') {
        Some((k, v)) if k.trim() == "sslmode" => {
          mode = Some(v.trim_matches('\'').to_string());
          false
        }
        _ => true,
      })
      .collect();
    if mode.is_some() {
      kept.join(" ")
    } else {
      s.to_string()
    }
  };
  Ok((out, mode))
}

fn pem_string(o: &serde_json::Map<String, Value>, key: &str) -> Result<Option<String>> {
  match o.get(key) {
    None | Some(Value::Null) => Ok(None),
    Some(Value::String(s)) if s.trim().is_empty() => {
      Err(bad(&format!("ssl.{key}"), "must not be empty"))
    }
    Some(Value::String(s)) => Ok(Some(s.clone())),
    Some(_) => Err(bad(
      &format!("ssl.{key}"),
      "must be a string (PEM text; read the file yourself, e.g. fs.readFileSync(path, 'utf8'))",
    )),
  }
}

/// Parses `storage.ssl` together with the connection string's `sslmode`:
/// (TLS on, its options).
pub(crate) fn parse(ssl: Option<&Value>, sslmode: Option<&str>) -> Result<(bool, TlsOptions)> {
  let mut t = TlsOptions::default();
  let mut reject: Option<bool> = None;
  let on = match ssl {
    None | Some(Value::Null) => None,
    Some(Value::Bool(b)) => Some(*b),
    Some(Value::Object(o)) => {
      const SSL_KEYS: &[&str] = &["rejectUnauthorized", "ca", "cert", "key"];
      if let Some(k) = o.keys().find(|k| !SSL_KEYS.contains(&k.as_str())) {
        return Err(bad(
          &format!("ssl.{k}"),
          format!("is not a TLS option (known: {})", SSL_KEYS.join(", ")),
        ));
      }
      reject = match o.get("rejectUnauthorized") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(bad("ssl.rejectUnauthorized", "must be a boolean")),
      };
      t.ca = pem_string(o, "ca")?;
      t.cert = pem_string(o, "cert")?;
      t.key = pem_string(o, "key")?;
      Some(true)
    }
    Some(_) => {
      return Err(bad(
        "ssl",
        "must be a boolean or an object { rejectUnauthorized, ca, cert, key }",
      ))
    }
  };
  let on = match sslmode {
    None => {
      let on = on.unwrap_or(false);
      if reject == Some(false) {
        t.verify = TlsVerify::None;
      }
      on
    }
    Some(mode) => {
      if matches!(ssl, Some(Value::Bool(_))) || reject.is_some() {
        return Err(bad(
          "ssl",
          format!(
            "cannot be a boolean or hold rejectUnauthorized when storage.connectionString has \
             sslmode={mode} (give only storage.ssl: {{ ca, cert, key }} with it)"
          ),
        ));
      }
      match mode {
        "disable" => {
          if on.is_some() {
            return Err(bad(
              "ssl",
              "cannot be given when storage.connectionString has sslmode=disable",
            ));
          }
          false
        }
        "prefer" | "allow" => {
          t.prefer = true;
          t.verify = TlsVerify::None;
          true
        }
        "require" => {
          t.verify = if t.ca.is_some() {
            TlsVerify::Ca
          } else {
            TlsVerify::None
          };
          true
        }
        "no-verify" => {
          t.verify = TlsVerify::None;
          true
        }
        "verify-ca" => {
          t.verify = TlsVerify::Ca;
          true
        }
        "verify-full" => {
          t.verify = TlsVerify::Full;
          true
        }
        other => {
          return Err(bad(
            "connectionString",
            format!(
              "has sslmode={other}, which is none of disable, prefer, require, no-verify, \
               verify-ca, verify-full"
            ),
          ))
        }
      }
    }
  };
  if t.cert.is_some() != t.key.is_some() {
    return Err(bad(
      if t.cert.is_some() {
        "ssl.key"
      } else {
        "ssl.cert"
      },
      "must be given with the other (a client certificate needs its key, and the other way round)",
    ));
  }
  // Validate the PEM now: a config error, not a failed connection later.
  if on {
    client_config(&t)?;
  }
  Ok((on, t))
}

fn certs(pem: &str, key: &str) -> Result<Vec<CertificateDer<'static>>> {
  let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
    .collect::<std::result::Result<_, _>>()
    .map_err(|e| bad(key, format!("is not a PEM certificate ({e})")))?;
  if certs.is_empty() {
    return Err(bad(
      key,
      "is not a PEM certificate (no -----BEGIN CERTIFICATE----- block)",
    ));
  }
  Ok(certs)
}

fn provider() -> Arc<CryptoProvider> {
  Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls client config for these options.
pub(crate) fn client_config(t: &TlsOptions) -> Result<rustls::ClientConfig> {
  let provider = provider();
  let mut roots = rustls::RootCertStore::empty();
  match &t.ca {
    Some(pem) => {
      for c in certs(pem, "ssl.ca")? {
        roots.add(c).map_err(|e| {
          bad(
            "ssl.ca",
            format!("holds a certificate that is not usable as a CA ({e})"),
          )
        })?;
      }
    }
    None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
  }
  let verifier: Arc<dyn ServerCertVerifier> = match t.verify {
    TlsVerify::None => Arc::new(Checked::new(DangerousAcceptAnyCertificate, &provider)),
    v => {
      let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| bad("ssl.ca", format!("cannot be used ({e})")))?;
      if v == TlsVerify::Ca {
        Arc::new(Checked::new(ChainOnly(inner), &provider))
      } else {
        inner
      }
    }
  };
  let builder = rustls::ClientConfig::builder_with_provider(provider)
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Storage(format!("TLS setup: {e}")))?
    .dangerous()
    .with_custom_certificate_verifier(verifier);
  match (&t.cert, &t.key) {
    (Some(cert), Some(key)) => {
      let chain = certs(cert, "ssl.cert")?;
      let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|_| {
        bad(
          "ssl.key",
          "is not a PEM private key (PKCS#8, PKCS#1 or SEC1)",
        )
      })?;
      builder
        .with_client_auth_cert(chain, key)
        .map_err(|e| bad("ssl.key", format!("does not fit storage.ssl.cert ({e})")))
    }
    _ => Ok(builder.with_no_client_auth()),
  }
}

/// The connector of every connection to the server (the pool's and the
/// LISTEN connection's): rustls with [`client_config`] when TLS is on
/// (`cfg.ssl`), `None` for plain TCP (`tokio_postgres::NoTls`).
pub(crate) fn connector(
  cfg: &super::PgConfig,
) -> Result<Option<tokio_postgres_rustls::MakeRustlsConnect>> {
  if !cfg.ssl {
    return Ok(None);
  }
  Ok(Some(tokio_postgres_rustls::MakeRustlsConnect::new(
    client_config(&cfg.tls)?,
  )))
}

/// The server-certificate check of a verifier of ours ([`Checked`]): the
/// one method that differs between them.
trait CertCheck: std::fmt::Debug + Send + Sync {
  fn check(
    &self,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
    ocsp_response: &[u8],
    now: UnixTime,
  ) -> std::result::Result<ServerCertVerified, rustls::Error>;
}

/// A [`ServerCertVerifier`] whose certificate check is `C`'s, and whose
/// handshake signatures are checked in one place, with the provider's
/// algorithms (as rustls's `WebPkiServerVerifier` checks them: the peer
/// holds the key of the certificate it sent).
#[derive(Debug)]
struct Checked<C> {
  cert: C,
  algorithms: WebPkiSupportedAlgorithms,
}

impl<C: CertCheck> Checked<C> {
  fn new(cert: C, provider: &CryptoProvider) -> Checked<C> {
    Checked {
      cert,
      algorithms: provider.signature_verification_algorithms,
    }
  }
}

impl<C: CertCheck> ServerCertVerifier for Checked<C> {
  fn verify_server_cert(
    &self,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
    ocsp_response: &[u8],
    now: UnixTime,
  ) -> std::result::Result<ServerCertVerified, rustls::Error> {
    self
      .cert
      .check(end_entity, intermediates, server_name, ocsp_response, now)
  }

  fn verify_tls12_signature(
    &self,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
  ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
  }

  fn verify_tls13_signature(
    &self,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
  ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
  }

  fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
    self.algorithms.supported_schemes()
  }
}

/// DANGEROUS: accepts any server certificate (`rejectUnauthorized: false`,
/// `sslmode=no-verify|require|prefer`). The connection is encrypted but
/// not authenticated: a machine in the middle can read and change it. Only
/// the handshake's signatures are checked ([`Checked`]: the peer holds the
/// key of the certificate it sent).
#[derive(Debug)]
struct DangerousAcceptAnyCertificate;

impl CertCheck for DangerousAcceptAnyCertificate {
  fn check(
    &self,
    _end_entity: &CertificateDer<'_>,
    _intermediates: &[CertificateDer<'_>],
    _server_name: &ServerName<'_>,
    _ocsp_response: &[u8],
    _now: UnixTime,
  ) -> std::result::Result<ServerCertVerified, rustls::Error> {
    Ok(ServerCertVerified::assertion())
  }
}

/// libpq's `verify-ca`: the chain is verified, the host name is not
/// (signatures: [`Checked`], with the same provider's algorithms as the
/// wrapped verifier).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl CertCheck for ChainOnly {
  fn check(
    &self,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
    ocsp_response: &[u8],
    now: UnixTime,
  ) -> std::result::Result<ServerCertVerified, rustls::Error> {
    // webpki checks the chain before the name: a name error means the
    // chain was good.
    match self
      .0
      .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    {
      Err(rustls::Error::InvalidCertificate(
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
      )) => Ok(ServerCertVerified::assertion()),
      other => other,
    }
  }
}

/// A failed TLS handshake, said plainly (`None`: not a TLS failure).
pub(crate) fn failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
  let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
  while let Some(err) = cur {
    let rustls_err = err.downcast_ref::<rustls::Error>().or_else(|| {
      err
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    });
    if let Some(r) = rustls_err {
      return Some(match r {
        rustls::Error::InvalidCertificate(c) => {
          let what = match c {
            CertificateError::UnknownIssuer => {
              "is not signed by a trusted CA (give the server's CA as storage.ssl.ca)".to_string()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
              "is not valid for the host name connected to".to_string()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
              "has expired".to_string()
            }
            other => format!("was refused ({other:?})"),
          };
          format!("TLS: the server's certificate {what}: {r}")
        }
        other => format!("TLS handshake failed: {other}"),
      });
    }
    cur = err.source();
  }
  None
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  fn err(ssl: Value, mode: Option<&str>) -> String {
    match parse(Some(&ssl), mode) {
      Err(Error::InvalidConfig(m)) => m,
      other => panic!("expected a config error, got {other:?}"),
    }
  }

  /// Both verifiers of ours check handshake signatures as rustls's own
  /// verifier does: the same schemes, from the same provider.
  #[test]
  fn our_verifiers_offer_the_signature_schemes_of_rustls_own() {
    let provider = provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
      .build()
      .expect("verifier");
    let want = webpki.supported_verify_schemes();
    assert!(!want.is_empty());
    let any = Checked::new(DangerousAcceptAnyCertificate, &provider);
    let chain = Checked::new(ChainOnly(webpki), &provider);
    assert_eq!(any.supported_verify_schemes(), want);
    assert_eq!(chain.supported_verify_schemes(), want);
  }

  #[test]
  fn sslmode_is_taken_out_of_the_connection_string() {
    let (s, m) = take_sslmode("postgres://u@h/d?sslmode=verify-full").unwrap();
    assert_eq!(
      (s.as_str(), m.as_deref()),
      ("postgres://u@h/d", Some("verify-full"))
    );
    let (s, m) =
      take_sslmode("postgresql://h/d?application_name=x&sslmode=require&connect_timeout=3")
        .unwrap();
    assert_eq!(
      (s.as_str(), m.as_deref()),
      (
        "postgresql://h/d?application_name=x&connect_timeout=3",
        Some("require")
      )
    );
    let (s, m) = take_sslmode("host=h sslmode=no-verify dbname=d").unwrap();
    assert_eq!(
      (s.as_str(), m.as_deref()),
      ("host=h dbname=d", Some("no-verify"))
    );
    let (s, m) = take_sslmode("postgres://h/d").unwrap();
    assert_eq!((s.as_str(), m), ("postgres://h/d", None));
  }

  #[test]
  fn modes() {
    let v = |ssl: Option<Value>, mode: Option<&str>| {
      let (on, t) = parse(ssl.as_ref(), mode).unwrap();
      (on, t.verify, t.prefer)
    };
    assert_eq!(v(None, None), (false, TlsVerify::Full, false));
    assert_eq!(v(Some(json!(true)), None), (true, TlsVerify::Full, false));
    assert_eq!(v(Some(json!(false)), None), (false, TlsVerify::Full, false));
    assert_eq!(v(Some(json!({})), None), (true, TlsVerify::Full, false));
    assert_eq!(
      v(Some(json!({ "rejectUnauthorized": false })), None),
      (true, TlsVerify::None, false)
    );
    assert_eq!(v(None, Some("disable")), (false, TlsVerify::Full, false));
    assert_eq!(v(None, Some("prefer")), (true, TlsVerify::None, true));
    assert_eq!(v(None, Some("require")), (true, TlsVerify::None, false));
    assert_eq!(v(None, Some("no-verify")), (true, TlsVerify::None, false));
    assert_eq!(v(None, Some("verify-ca")), (true, TlsVerify::Ca, false));
    assert_eq!(v(None, Some("verify-full")), (true, TlsVerify::Full, false));
  }

  #[test]
  fn bad_values_name_their_key_and_hide_their_contents() {
    let m = err(
      json!({ "ca": "-----BEGIN CERTIFICATE-----\nc2VjcmV0\n-----END CERTIFICATE-----\n" }),
      None,
    );
    assert!(m.starts_with("storage.ssl.ca "), "{m}");
    assert!(!m.contains("c2VjcmV0"), "{m}");
    assert!(
      err(json!({ "ca": "not pem" }), None).starts_with("storage.ssl.ca is not a PEM certificate")
    );
    assert!(err(json!({ "ca": 3 }), None).starts_with("storage.ssl.ca must be a string"));
    assert!(err(json!({ "ca": "" }), None).starts_with("storage.ssl.ca must not be empty"));
    assert!(err(json!({ "rejectUnauthorized": "no" }), None)
      .starts_with("storage.ssl.rejectUnauthorized must be a boolean"));
    assert!(err(json!({ "servername": "x" }), None)
      .starts_with("storage.ssl.servername is not a TLS option"));
    assert!(
      err(json!({ "cert": "x" }), None).starts_with("storage.ssl.key must be given with the other")
    );
    assert!(err(json!("yes"), None).starts_with("storage.ssl must be a boolean or an object"));
    assert!(err(json!(true), Some("require")).starts_with("storage.ssl cannot be a boolean"));
    assert!(
      err(json!({ "rejectUnauthorized": false }), Some("verify-full"))
        .starts_with("storage.ssl cannot be a boolean or hold rejectUnauthorized")
    );
    assert!(err(json!({}), Some("disable")).starts_with("storage.ssl cannot be given"));
    assert!(err(json!({}), Some("bogus")).starts_with("storage.connectionString has sslmode=bogus"));
    let bad_key = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n";
    let m = err(json!({ "cert": "x", "key": bad_key }), None);
    assert!(
      m.starts_with("storage.ssl.cert is not a PEM certificate"),
      "{m}"
    );
    assert!(!m.contains("c2VjcmV0"), "{m}");
  }
}
