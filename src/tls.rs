//! TLS clients: rustls on ring, trusting the Mozilla roots of `webpki-roots` plus, optionally, the certificates
//! of a PEM file (a private CA). Used by log drains, outgoing `wasi:http` requests and edge hosts following a
//! central server.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A client configuration trusting the Mozilla roots, and the certificates in `ca_file` if given.
pub(crate) fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        add_pem_file(&mut roots, path)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Adds the certificates of the PEM file at `path` to `roots`; a file that holds none is an error.
pub(crate) fn add_pem_file(roots: &mut rustls::RootCertStore, path: &Path) -> Result<(), String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut found = 0;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        found += 1;
    }
    if found == 0 {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(())
}

/// The configuration with the Mozilla roots only, built once.
pub(crate) fn web_pki() -> Arc<ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| client_config(None).expect("the built-in roots make a TLS configuration"))
        .clone()
}
