//! TLS for the web transport, shaped like a browser talking to a web site: TLS 1.2 and 1.3,
//! ALPN `http/1.1`, SNI of the site's name. The certificate does not authenticate the peer
//! (Noise inside does, binding the peer id), so the client accepts any certificate — a
//! self-signed one on a node, a real one on a web front — while still checking that the server
//! holds the certificate's key.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Errors setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The certificate or key file could not be read.
    #[error("reading {path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// rustls refused the configuration (key does not match certificate, no certificate).
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// A certificate without its key, or a key without its certificate.
    #[error("a TLS certificate needs its key, and a key its certificate")]
    Incomplete,
    /// A self-signed certificate could not be made.
    #[error("self-signed certificate: {0}")]
    SelfSigned(String),
}

/// The protocols a browser asks a web site for, minus HTTP/2 (the upgrade is HTTP/1.1).
const ALPN: &[u8] = b"http/1.1";

fn provider() -> Arc<CryptoProvider> {
    // Explicit: both ring and aws-lc are in the build, so rustls has no process default.
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client side: any certificate, TLS 1.2 and 1.3, ALPN `http/1.1`.
pub fn client_config() -> Result<rustls::ClientConfig, TlsSetupError> {
    let provider = provider();
    let verifier = Arc::new(AnyCertificate(provider.signature_verification_algorithms));
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// The server side, from a PEM certificate chain and key (an operator's real certificate).
pub fn server_config_from_files(
    cert: &Path,
    key: &Path,
) -> Result<rustls::ServerConfig, TlsSetupError> {
    let pem_err = |path: &Path, e: rustls::pki_types::pem::Error| TlsSetupError::Pem {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_err(cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(cert, e))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e))?;
    server_config(chain, key_der)
}

/// The server side with a fresh self-signed certificate for `name`.
pub fn server_config_self_signed(name: &str) -> Result<rustls::ServerConfig, TlsSetupError> {
    let err = |e: rcgen::Error| TlsSetupError::SelfSigned(e.to_string());
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).map_err(err)?;
    // rcgen's defaults (CN "rcgen self signed cert", valid 1975–4096) would be a fingerprint
    // of their own: the site's name, and the 90 days an ACME certificate lasts.
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, name);
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(89);
    let key_pair = rcgen::KeyPair::generate().map_err(err)?;
    let cert = params.self_signed(&key_pair).map_err(err)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    server_config(vec![cert.der().clone()], key)
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, TlsSetupError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// Accepts any certificate, but checks the handshake signature made with its key.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Who the peer is, Noise decides inside; TLS here is the web site's envelope.
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_build_and_files_round_trip() {
        let client = client_config().expect("client");
        assert_eq!(client.alpn_protocols, vec![ALPN.to_vec()]);
        server_config_self_signed("news.example").expect("self-signed");

        let dir = tempfile::tempdir().expect("tmp");
        let made = rcgen::generate_simple_self_signed(vec!["news.example".into()]).expect("cert");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, made.cert.pem()).expect("write");
        std::fs::write(&key, made.key_pair.serialize_pem()).expect("write");
        server_config_from_files(&cert, &key).expect("from files");
        // A key that is not the certificate's, and a missing file, are clear errors.
        let other = rcgen::generate_simple_self_signed(vec!["x".into()]).expect("cert");
        std::fs::write(&key, other.key_pair.serialize_pem()).expect("write");
        assert!(server_config_from_files(&cert, &key).is_err());
        let missing = server_config_from_files(&dir.path().join("none.pem"), &key);
        assert!(
            matches!(missing, Err(TlsSetupError::Pem { .. })),
            "{missing:?}"
        );
    }
}
