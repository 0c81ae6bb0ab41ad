//! `caretaker-aggregator certs`: a private CA and the certificates and tokens a cluster
//! install needs, as files and as Kubernetes Secrets (`secrets.yaml`).
//!
//! ```text
//! OUT/ca.crt, ca.key                  the CA (reused when present: renewals, more nodes)
//! OUT/aggregator/{tls.crt,tls.key,ca.crt}   server certificate for <release>-aggregator
//! OUT/agent/{tls.crt,tls.key,ca.crt}  client certificate shared by all agents (caretaker-node:*)
//! OUT/nodes/<node>/{tls.crt,tls.key,ca.crt} one node's client certificate (caretaker-node:<node>),
//!                                     to copy to /etc/caretaker/pki on that node
//! OUT/tokens/{read,admin}             API bearer tokens (kept when present)
//! OUT/secrets.yaml                    Secrets <release>-aggregator-tls, <release>-agent-tls,
//!                                     <release>-api-tokens for `kubectl apply -f`
//! ```
//!
//! Keys are ECDSA P-256 (ring), written with mode 0600. [`Ca`] is also what the tests use
//! to make good, expired and foreign certificates.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::api::tls::{NODE_URI_PREFIX, SHARED_NODE_URI};

/// Errors of `certs`.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("certificate generation")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid node name {name:?}: {message}")]
    NodeName { name: String, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CertsError + '_ {
    move |source| CertsError::Io {
        path: path.into(),
        source,
    }
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate authority that signs server and agent certificates.
pub struct Ca {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

fn validity(params: &mut CertificateParams, not_before: OffsetDateTime, not_after: OffsetDateTime) {
    params.not_before = not_before;
    params.not_after = not_after;
}

impl Ca {
    /// A new self-signed CA valid from `not_before` to `not_after`.
    ///
    /// # Errors
    /// Key generation or signing failed.
    pub fn new(
        common_name: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Self, CertsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, not_before, not_after);
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// An existing CA from its PEM certificate and key.
    ///
    /// # Errors
    /// Unparsable certificate or key.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, CertsError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            issuer,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    fn issue(&self, mut params: CertificateParams) -> Result<CertAndKey, CertsError> {
        let key = KeyPair::generate()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A server certificate for these DNS names (and IP addresses, if any parse as one).
    ///
    /// # Errors
    /// Invalid name, or signing failed.
    pub fn issue_server(
        &self,
        names: &[String],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<CertAndKey, CertsError> {
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().map_or("caretaker-aggregator", String::as_str),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params, not_before, not_after);
        self.issue(params)
    }

    /// An agent's client certificate for `node` (`caretaker-node:<node>`), or with `None`
    /// the one shared by all agents (`caretaker-node:*`).
    ///
    /// # Errors
    /// Invalid node name, or signing failed.
    pub fn issue_agent(
        &self,
        node: Option<&str>,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<CertAndKey, CertsError> {
        let (cn, uri) = match node {
            Some(n) => {
                caretaker_core::model::validate_node_name(n).map_err(|e| CertsError::NodeName {
                    name: n.into(),
                    message: e.to_string(),
                })?;
                (n.to_string(), format!("{NODE_URI_PREFIX}{n}"))
            }
            None => ("caretaker-agent".to_string(), SHARED_NODE_URI.to_string()),
        };
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = vec![SanType::URI(uri.try_into()?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut params, not_before, not_after);
        self.issue(params)
    }
}

/// What `certs` makes.
#[derive(Debug, Clone)]
pub struct CertsOptions {
    pub out: PathBuf,
    /// Helm release name (object name prefix); `caretaker` matches the kustomize manifests.
    pub release: String,
    pub namespace: String,
    /// Nodes that get their own certificate.
    pub nodes: Vec<String>,
    /// Extra DNS names or IP addresses of the aggregator (e.g. a LoadBalancer's).
    pub(crate) extra_names: Vec<String>,
    /// Validity of the server and agent certificates.
    pub days: u32,
    /// Validity of a new CA.
    pub(crate) ca_days: u32,
}

/// What `certs` did, for the summary it prints.
#[derive(Debug, Clone, Default)]
pub struct CertsSummary {
    pub reused_ca: bool,
    pub reused_tokens: bool,
    pub written: Vec<PathBuf>,
}

fn write(
    path: &Path,
    text: &str,
    private: bool,
    summary: &mut CertsSummary,
) -> Result<(), CertsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    // Write beside and rename, so that a reader (or a reload) never sees half a file.
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    summary.written.push(path.to_path_buf());
    Ok(())
}

fn write_pair(
    dir: &Path,
    ck: &CertAndKey,
    ca_pem: &str,
    summary: &mut CertsSummary,
) -> Result<(), CertsError> {
    write(&dir.join("tls.crt"), &ck.cert_pem, false, summary)?;
    write(&dir.join("tls.key"), &ck.key_pem, true, summary)?;
    write(&dir.join("ca.crt"), ca_pem, false, summary)
}

/// A random token: 32 bytes from the operating system's CSPRNG-seeded generator, hex.
fn new_token() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn block(out: &mut String, key: &str, value: &str) {
    let _ = writeln!(out, "  {key}: |");
    for line in value.lines() {
        let _ = writeln!(out, "    {line}");
    }
}

fn secret(out: &mut String, name: &str, namespace: &str, kind: &str, entries: &[(&str, &str)]) {
    let _ = write!(
        out,
        "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels:\n    app.kubernetes.io/part-of: caretaker\ntype: {kind}\nstringData:\n"
    );
    for (k, v) in entries {
        block(out, k, v);
    }
}

/// Creates (or renews) everything under `opts.out`; see the module docs.
///
/// # Errors
/// Files that cannot be read or written, an invalid node name.
pub fn generate(opts: &CertsOptions) -> Result<CertsSummary, CertsError> {
    let mut summary = CertsSummary::default();
    let now = OffsetDateTime::now_utc();
    // A little slack for clocks that run behind.
    let not_before = now - Duration::hours(1);
    let not_after = now + Duration::days(i64::from(opts.days));
    let (ca_crt, ca_key) = (opts.out.join("ca.crt"), opts.out.join("ca.key"));
    let ca = if ca_crt.exists() && ca_key.exists() {
        summary.reused_ca = true;
        let cert = std::fs::read_to_string(&ca_crt).map_err(io(&ca_crt))?;
        let key = std::fs::read_to_string(&ca_key).map_err(io(&ca_key))?;
        Ca::load(&cert, &key)?
    } else {
        let ca = Ca::new(
            "caretaker CA",
            not_before,
            now + Duration::days(i64::from(opts.ca_days)),
        )?;
        write(&ca_crt, ca.cert_pem(), false, &mut summary)?;
        write(&ca_key, ca.key_pem(), true, &mut summary)?;
        ca
    };
    for n in &opts.nodes {
        caretaker_core::model::validate_node_name(n).map_err(|e| CertsError::NodeName {
            name: n.clone(),
            message: e.to_string(),
        })?;
    }

    let svc = format!("{}-aggregator", opts.release);
    let mut names = vec![
        svc.clone(),
        format!("{svc}.{}", opts.namespace),
        format!("{svc}.{}.svc", opts.namespace),
        format!("{svc}.{}.svc.cluster.local", opts.namespace),
        // `kubectl port-forward` and the container test reach it on loopback.
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    names.extend(opts.extra_names.iter().cloned());
    let server = ca.issue_server(&names, not_before, not_after)?;
    write_pair(
        &opts.out.join("aggregator"),
        &server,
        ca.cert_pem(),
        &mut summary,
    )?;
    let shared = ca.issue_agent(None, not_before, not_after)?;
    write_pair(
        &opts.out.join("agent"),
        &shared,
        ca.cert_pem(),
        &mut summary,
    )?;
    for n in &opts.nodes {
        let c = ca.issue_agent(Some(n), not_before, not_after)?;
        write_pair(
            &opts.out.join("nodes").join(n),
            &c,
            ca.cert_pem(),
            &mut summary,
        )?;
    }

    let (read_t, admin_t) = (opts.out.join("tokens/read"), opts.out.join("tokens/admin"));
    let (read, admin) = if read_t.exists() && admin_t.exists() {
        summary.reused_tokens = true;
        (
            std::fs::read_to_string(&read_t)
                .map_err(io(&read_t))?
                .trim()
                .to_string(),
            std::fs::read_to_string(&admin_t)
                .map_err(io(&admin_t))?
                .trim()
                .to_string(),
        )
    } else {
        let (r, a) = (new_token(), new_token());
        write(&read_t, &format!("{r}\n"), true, &mut summary)?;
        write(&admin_t, &format!("{a}\n"), true, &mut summary)?;
        (r, a)
    };

    let mut yaml =
        String::from("# Created by `caretaker-aggregator certs`; apply with `kubectl apply -f`.\n");
    let _ = write!(
        yaml,
        "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {0}\n  labels:\n    app.kubernetes.io/part-of: caretaker\n    pod-security.kubernetes.io/enforce: privileged\n",
        opts.namespace
    );
    let tls = "kubernetes.io/tls";
    secret(
        &mut yaml,
        &format!("{}-aggregator-tls", opts.release),
        &opts.namespace,
        tls,
        &[
            ("tls.crt", &server.cert_pem),
            ("tls.key", &server.key_pem),
            ("ca.crt", ca.cert_pem()),
        ],
    );
    secret(
        &mut yaml,
        &format!("{}-agent-tls", opts.release),
        &opts.namespace,
        tls,
        &[
            ("tls.crt", &shared.cert_pem),
            ("tls.key", &shared.key_pem),
            ("ca.crt", ca.cert_pem()),
        ],
    );
    secret(
        &mut yaml,
        &format!("{}-api-tokens", opts.release),
        &opts.namespace,
        "Opaque",
        &[("read", &read), ("admin", &admin)],
    );
    write(&opts.out.join("secrets.yaml"), &yaml, true, &mut summary)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    use super::*;
    use crate::api::tls::{PeerIdentity, peer_identity};

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    #[test]
    fn agent_certificates_name_their_node_or_all() {
        let now = OffsetDateTime::now_utc();
        let ca = Ca::new("test CA", now - Duration::hours(1), now + Duration::days(1)).unwrap();
        let a = ca
            .issue_agent(Some("worker-1"), now, now + Duration::days(1))
            .unwrap();
        assert_eq!(
            peer_identity(&der(&a.cert_pem)),
            Ok(PeerIdentity::Node("worker-1".into()))
        );
        let s = ca.issue_agent(None, now, now + Duration::days(1)).unwrap();
        assert_eq!(peer_identity(&der(&s.cert_pem)), Ok(PeerIdentity::Shared));
        let srv = ca
            .issue_server(&["agg".into()], now, now + Duration::days(1))
            .unwrap();
        assert!(
            peer_identity(&der(&srv.cert_pem))
                .unwrap_err()
                .to_string()
                .contains("has no URI SAN caretaker-node:<node>")
        );
        assert!(matches!(
            ca.issue_agent(Some("Bad Name"), now, now),
            Err(CertsError::NodeName { .. })
        ));
        // A reloaded CA signs certificates that chain to the same root.
        let again = Ca::load(ca.cert_pem(), ca.key_pem()).unwrap();
        let b = again
            .issue_agent(Some("worker-2"), now, now + Duration::days(1))
            .unwrap();
        assert_eq!(
            peer_identity(&der(&b.cert_pem)),
            Ok(PeerIdentity::Node("worker-2".into()))
        );
    }

    #[test]
    fn generate_writes_files_and_reuses_ca_and_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let opts = CertsOptions {
            out: dir.path().join("pki"),
            release: "caretaker".into(),
            namespace: "caretaker".into(),
            nodes: vec!["node-a".into()],
            extra_names: vec![],
            days: 30,
            ca_days: 365,
        };
        let first = generate(&opts).unwrap();
        assert!(!first.reused_ca && !first.reused_tokens);
        let read = |p: &str| std::fs::read_to_string(dir.path().join("pki").join(p)).unwrap();
        let ca1 = read("ca.crt");
        let token = read("tokens/read");
        assert_eq!(token.trim().len(), 64);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("pki/agent/tls.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read("nodes/node-a/ca.crt"), ca1);
        let second = generate(&opts).unwrap();
        assert!(second.reused_ca && second.reused_tokens);
        assert_eq!(read("ca.crt"), ca1);
        assert_eq!(read("tokens/read"), token);
        // The Service's names and loopback (kubectl port-forward), as DNS and IP SANs.
        let pem = read("aggregator/tls.crt");
        let (_, cert_der) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = cert_der.parse_x509().unwrap();
        let sans: Vec<String> = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => format!("dns:{d}"),
                x509_parser::extensions::GeneralName::IPAddress(ip) => format!("ip:{ip:?}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            sans,
            [
                "dns:caretaker-aggregator",
                "dns:caretaker-aggregator.caretaker",
                "dns:caretaker-aggregator.caretaker.svc",
                "dns:caretaker-aggregator.caretaker.svc.cluster.local",
                "dns:localhost",
                "ip:[127, 0, 0, 1]",
            ]
        );
        let yaml = read("secrets.yaml");
        for name in [
            "name: caretaker-aggregator-tls",
            "name: caretaker-agent-tls",
            "name: caretaker-api-tokens",
            "kind: Namespace",
        ] {
            assert!(yaml.contains(name), "{name} in {yaml}");
        }
    }
}
