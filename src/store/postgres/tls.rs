//! TLS to the state store's database, with libpq's `sslmode` and `sslrootcert` in the URL (tokio-postgres itself
//! knows only `disable`, `prefer` and `require`, and no root certificate):
//!
//! - no `sslmode`, or `disable`: plain TCP, as before this option existed (keep the database on a private network);
//! - `prefer`: TLS if the server offers it, `require`: TLS or nothing; neither checks the server's certificate,
//!   exactly as libpq (encryption against eavesdroppers, not against a server impostor);
//! - `verify-ca`: TLS with the certificate checked against the roots; `verify-full`: and against the host name.
//!
//! The roots are the PEM file `sslrootcert` names, or the Mozilla roots (`sslrootcert=system`, or none given).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How to reach the database: the URL for tokio-postgres (without the options read here), its `sslmode`, and the
/// TLS connector (none for plain TCP).
pub(crate) struct Tls {
    pub url: String,
    pub mode: SslMode,
    pub connector: Option<MakeRustlsConnect>,
}

/// Reads `sslmode` and `sslrootcert` off `url` (the URL form, `postgres://...?sslmode=...`, or the key=value form).
pub(crate) fn from_url(url: &str) -> Result<Tls, String> {
    let (url, options) = take_options(url, &["sslmode", "sslrootcert"]);
    let root = options
        .iter()
        .find(|(k, _)| k == "sslrootcert")
        .map(|(_, v)| v.as_str());
    let mode = options
        .iter()
        .find(|(k, _)| k == "sslmode")
        .map(|(_, v)| v.as_str());
    let (mode, verify) = match mode {
        None | Some("disable") => {
            return Ok(Tls {
                url,
                mode: SslMode::Disable,
                connector: None,
            });
        }
        Some("allow" | "prefer") => (SslMode::Prefer, Verify::Nothing),
        Some("require") => (SslMode::Require, Verify::Nothing),
        Some("verify-ca") => (SslMode::Require, Verify::Chain),
        Some("verify-full") => (SslMode::Require, Verify::ChainAndName),
        Some(other) => {
            return Err(format!(
                "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
            ));
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match verify {
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked(
                provider.signature_verification_algorithms,
            )))
            .with_no_client_auth(),
        Verify::Chain | Verify::ChainAndName => {
            let roots = Arc::new(roots(root)?);
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                roots,
                provider.clone(),
            )
            .build()
            .map_err(|e| e.to_string())?;
            let verifier: Arc<dyn ServerCertVerifier> = if verify == Verify::Chain {
                Arc::new(ChainOnly(webpki))
            } else {
                webpki
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        }
    };
    Ok(Tls {
        url,
        mode,
        connector: Some(MakeRustlsConnect::new(config)),
    })
}

/// Connects with `config`, over `tls` if given, and drives the connection on a task of the current runtime
/// (logging how it ended, as `what`'s); the client.
pub(crate) async fn connect(
    config: &tokio_postgres::Config,
    tls: Option<&MakeRustlsConnect>,
    what: &'static str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let ended = move |e: tokio_postgres::Error| tracing::warn!("{what} connection ended: {e}");
    match tls {
        None => config
            .connect(tokio_postgres::NoTls)
            .await
            .map(|(client, connection)| {
                tokio::spawn(async move { connection.await.unwrap_or_else(ended) });
                client
            }),
        Some(tls) => config
            .connect(tls.clone())
            .await
            .map(|(client, connection)| {
                tokio::spawn(async move { connection.await.unwrap_or_else(ended) });
                client
            }),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verify {
    Nothing,
    Chain,
    ChainAndName,
}

/// The trusted roots: those of the PEM file at `root`, or the Mozilla roots.
fn roots(root: Option<&str>) -> Result<rustls::RootCertStore, String> {
    let Some(path) = root.filter(|r| *r != "system") else {
        return Ok(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    };
    let mut roots = rustls::RootCertStore::empty();
    crate::tls::add_pem_file(&mut roots, Path::new(path))
        .map_err(|e| format!("sslrootcert {e}"))?;
    Ok(roots)
}

/// `url` without the options named in `keys`, and those options (key, value).
fn take_options(url: &str, keys: &[&str]) -> (String, Vec<(String, String)>) {
    let mut taken = Vec::new();
    let mut keep = |pair: &str| match pair.split_once('=') {
        Some((k, v)) if keys.contains(&k.trim()) => {
            taken.push((k.trim().to_string(), v.trim().to_string()));
            false
        }
        _ => true,
    };
    if url.contains("://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_string(), taken);
        };
        let rest: Vec<&str> = query.split('&').filter(|pair| keep(pair)).collect();
        let url = if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        (url, taken)
    } else {
        let rest: Vec<&str> = url.split_whitespace().filter(|pair| keep(pair)).collect();
        (rest.join(" "), taken)
    }
}

/// libpq's `prefer` and `require`: any certificate; the handshake's signatures are still checked.
#[derive(Debug)]
struct Unchecked(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// libpq's `verify-ca`: the chain to a trusted root, whatever name the certificate is for.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_options_come_off_both_url_forms() {
        let (url, taken) = take_options(
            "postgres://u:p@db:5432/x?sslmode=verify-full&application_name=a&sslrootcert=/ca.pem",
            &["sslmode", "sslrootcert"],
        );
        assert_eq!(url, "postgres://u:p@db:5432/x?application_name=a");
        assert_eq!(taken.len(), 2);
        let (url, taken) = take_options("host=db sslmode=require user=u", &["sslmode"]);
        assert_eq!(url, "host=db user=u");
        assert_eq!(taken, vec![("sslmode".to_string(), "require".to_string())]);
        assert!(from_url("postgres://db/x?sslmode=sometimes").is_err());
        assert!(from_url("postgres://db/x").unwrap().connector.is_none());
    }
}
