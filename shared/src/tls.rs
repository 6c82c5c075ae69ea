//! One trust store per process. The platform's root certificates are read once, at cold start, and given to
//! every TLS client: the AWS SDK's and each reqwest client. Left alone, each of them reads and parses the
//! whole store again (`make bench`: 1.5–15 ms per read, two or three reads per function).

use std::sync::OnceLock;

static ROOTS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();

/// The platform's root certificates (DER) that are usable trust anchors, read on first use. Empty when none
/// could be read: the clients then fall back to their own loading, which reports it.
pub fn native_roots() -> &'static [Vec<u8>] {
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(error = %error, "a platform root certificate could not be read");
        }
        trust_anchors(found.certs.iter().map(|c| c.as_ref()))
    })
}

/// The certificates rustls accepts as roots. Both clients reject a whole store with one unparsable
/// certificate in it (the SDK panics), where their own loading skips it: skip it here too.
fn trust_anchors<'a>(certs: impl Iterator<Item = &'a [u8]>) -> Vec<Vec<u8>> {
    let mut usable = Vec::new();
    let mut skipped = 0;
    for der in certs {
        let mut probe = rustls::RootCertStore::empty();
        match probe.add(rustls::pki_types::CertificateDer::from(der)) {
            Ok(()) => usable.push(der.to_vec()),
            Err(_) => skipped += 1,
        }
    }
    if skipped > 0 {
        tracing::warn!(
            skipped,
            "platform root certificates rustls cannot use were skipped"
        );
    }
    usable
}

/// Certificates (DER) as one PEM bundle: the AWS SDK's trust store takes PEM.
#[cfg(feature = "aws")]
pub fn pem_bundle(certs: &[Vec<u8>]) -> Vec<u8> {
    use base64::Engine;
    let mut out = Vec::with_capacity(certs.iter().map(|c| c.len() * 4 / 3 + 64).sum());
    for der in certs {
        let text = base64::engine::general_purpose::STANDARD.encode(der);
        out.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        for line in text.as_bytes().chunks(64) {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    out
}

#[cfg(all(test, feature = "aws"))]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn a_pem_bundle_decodes_back_to_the_same_certificates() {
        let certs = vec![
            (0..=255u8).cycle().take(1000).collect::<Vec<u8>>(),
            vec![7u8; 3],
        ];
        let pem = String::from_utf8(pem_bundle(&certs)).unwrap();
        assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----\n").count(), 2);
        assert!(pem.lines().all(|l| l.len() <= 64));
        let decoded: Vec<Vec<u8>> = pem
            .split("-----END CERTIFICATE-----\n")
            .filter(|block| !block.is_empty())
            .map(|block| {
                let body: String = block.lines().filter(|l| !l.starts_with("-----")).collect();
                base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .unwrap()
            })
            .collect();
        assert_eq!(decoded, certs);
    }

    #[test]
    fn the_bundle_passes_the_sdks_own_parse_and_add() {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let roots = native_roots();
        assert!(!roots.is_empty(), "this machine has root certificates");
        // What aws-smithy-http-client's `rustls_root_certs` does with a PEM trust store (it panics on failure).
        let parsed: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(&pem_bundle(roots))
            .collect::<Result<_, _>>()
            .unwrap();
        let mut store = rustls::RootCertStore::empty();
        for cert in &parsed {
            store.add(cert.clone()).unwrap();
        }
        assert_eq!(store.len(), roots.len());
        let parsed: Vec<&[u8]> = parsed.iter().map(|c| c.as_ref()).collect();
        assert!(roots.iter().map(Vec::as_slice).eq(parsed));
    }

    #[test]
    fn an_unusable_certificate_is_skipped_not_fatal() {
        let good = native_roots()
            .first()
            .expect("this machine has root certificates");
        let kept = trust_anchors([b"not a certificate".as_slice(), good.as_slice()].into_iter());
        assert_eq!(kept, vec![good.clone()]);
    }

    #[cfg(feature = "client")]
    #[test]
    fn the_http_clients_build_on_the_shared_roots() {
        use crate::http_client::{client, no_redirects_client, TOKEN_ENDPOINT};
        assert!(!native_roots().is_empty());
        client("test", TOKEN_ENDPOINT).unwrap();
        no_redirects_client("test", TOKEN_ENDPOINT).unwrap();
    }
}
