//! The cluster's certificates: a CA, the API server's serving certificate, an admin client
//! certificate (group system:masters), an admin bearer token, and `admin.kubeconfig`. Created on
//! first start in `DATA_DIR/pki`, reused afterwards.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// Names the serving certificate is valid for, besides those of the listen address.
pub const DEFAULT_SANS: &[&str] = &[
    "localhost",
    "127.0.0.1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    // The `kubernetes` Service's ClusterIP, for clients inside pods.
    tug_api::cluster::KUBERNETES_SERVICE_IP,
];

/// PEM material of a running API server.
#[derive(Clone)]
pub struct Pki {
    pub ca_cert: String,
    pub server_cert: String,
    pub server_key: String,
    pub admin_cert: String,
    pub admin_key: String,
    /// The admin bearer token.
    pub token: String,
    /// The token node agents join with (`DATA_DIR/node-token`).
    pub node_token: String,
    /// The request-header CA aggregated API servers trust for the front-proxy headers.
    pub front_proxy_ca: String,
    /// The client certificate the API server proxies to aggregated APIs with
    /// (`front-proxy-client`, signed by the request-header CA).
    pub front_proxy_client: Issued,
    /// Where the files live.
    pub dir: PathBuf,
    /// The CA's private key, to sign node certificates with.
    ca_key: String,
}

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert: String,
    pub key: String,
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    named_ca_params("tugboat-ca")
}

fn named_ca_params(cn: &str) -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_after = rcgen::date_time_ymd(2036, 1, 1);
    Ok(p)
}

/// Writes a file only its owner may read (keys, tokens), atomically.
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    // Written beside and renamed into place, so that a reader never sees half a file: `tug
    // up` reads the kubeconfig as soon as it exists.
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::io::Write::write_all(&mut f, contents.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The request-header CA (`front-proxy-ca`) and the `front-proxy-client` certificate it
/// signs, created once in `dir`.
fn front_proxy(dir: &Path) -> anyhow::Result<(String, Issued)> {
    let path = |n: &str| dir.join(n);
    let key = if path("front-proxy-ca.key").exists() {
        KeyPair::from_pem(&read(&path("front-proxy-ca.key"))?)
            .context("parsing pki/front-proxy-ca.key")?
    } else {
        let k = KeyPair::generate()?;
        write_private(&path("front-proxy-ca.key"), &k.serialize_pem())?;
        k
    };
    if !path("front-proxy-ca.crt").exists() {
        let cert = named_ca_params("front-proxy-ca")?.self_signed(&key)?;
        std::fs::write(path("front-proxy-ca.crt"), cert.pem())?;
    }
    if !path("front-proxy-client.crt").exists() || !path("front-proxy-client.key").exists() {
        let issuer = Issuer::new(named_ca_params("front-proxy-ca")?, key);
        let client_key = KeyPair::generate()?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name
            .push(DnType::CommonName, "front-proxy-client");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let cert = p.signed_by(&client_key, &issuer)?;
        std::fs::write(path("front-proxy-client.crt"), cert.pem())?;
        write_private(&path("front-proxy-client.key"), &client_key.serialize_pem())?;
    }
    Ok((
        read(&path("front-proxy-ca.crt"))?,
        Issued {
            cert: read(&path("front-proxy-client.crt"))?,
            key: read(&path("front-proxy-client.key"))?,
        },
    ))
}

impl Pki {
    /// Loads the PKI from `data_dir/pki`, creating what is missing. The serving certificate is
    /// reissued when `sans` names something it does not cover.
    pub fn load_or_create(data_dir: &Path, sans: &[String]) -> anyhow::Result<Pki> {
        let dir = data_dir.join("pki");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = |n: &str| dir.join(n);

        let ca_key = if path("ca.key").exists() {
            KeyPair::from_pem(&read(&path("ca.key"))?).context("parsing pki/ca.key")?
        } else {
            let k = KeyPair::generate()?;
            write_private(&path("ca.key"), &k.serialize_pem())?;
            k
        };
        if !path("ca.crt").exists() {
            let cert = ca_params()?.self_signed(&ca_key)?;
            std::fs::write(path("ca.crt"), cert.pem())?;
        }
        let issuer = Issuer::new(ca_params()?, ca_key);

        let mut all_sans: Vec<String> = DEFAULT_SANS.iter().map(|s| s.to_string()).collect();
        if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            all_sans.push(host.trim().to_string());
        }
        for s in sans {
            if !all_sans.contains(s) {
                all_sans.push(s.clone());
            }
        }
        all_sans.retain(|s| !s.is_empty() && s != "0.0.0.0" && s != "::");
        let sans_file = path("server.sans");
        let recorded = std::fs::read_to_string(&sans_file).unwrap_or_default();
        let covered = all_sans.iter().all(|s| recorded.lines().any(|l| l == s));
        if !covered || !path("server.crt").exists() || !path("server.key").exists() {
            let key = KeyPair::generate()?;
            let mut p = CertificateParams::new(Vec::<String>::new())?;
            p.distinguished_name
                .push(DnType::CommonName, "kube-apiserver");
            p.subject_alt_names = all_sans
                .iter()
                .map(|s| match s.parse::<std::net::IpAddr>() {
                    Ok(ip) => Ok(SanType::IpAddress(ip)),
                    Err(_) => s.clone().try_into().map(SanType::DnsName),
                })
                .collect::<Result<_, _>>()?;
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            p.not_after = rcgen::date_time_ymd(2036, 1, 1);
            let cert = p.signed_by(&key, &issuer)?;
            std::fs::write(path("server.crt"), cert.pem())?;
            write_private(&path("server.key"), &key.serialize_pem())?;
            std::fs::write(&sans_file, all_sans.join("\n"))?;
        }

        if !path("admin.crt").exists() || !path("admin.key").exists() {
            let key = KeyPair::generate()?;
            let mut p = CertificateParams::new(Vec::<String>::new())?;
            p.distinguished_name.push(DnType::CommonName, "admin");
            p.distinguished_name
                .push(DnType::OrganizationName, "system:masters");
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            p.not_after = rcgen::date_time_ymd(2036, 1, 1);
            let cert = p.signed_by(&key, &issuer)?;
            std::fs::write(path("admin.crt"), cert.pem())?;
            write_private(&path("admin.key"), &key.serialize_pem())?;
        }

        let (front_proxy_ca, front_proxy_client) = front_proxy(&dir)?;

        let token_file = data_dir.join("token");
        let node_token_file = data_dir.join("node-token");
        for file in [&token_file, &node_token_file] {
            if !file.exists() {
                let token: String = uuid::Uuid::new_v4().simple().to_string()
                    + &uuid::Uuid::new_v4().simple().to_string();
                write_private(file, &token)?;
            }
        }

        Ok(Pki {
            ca_cert: read(&path("ca.crt"))?,
            server_cert: read(&path("server.crt"))?,
            server_key: read(&path("server.key"))?,
            admin_cert: read(&path("admin.crt"))?,
            admin_key: read(&path("admin.key"))?,
            token: read(&token_file)?.trim().to_string(),
            node_token: read(&node_token_file)?.trim().to_string(),
            ca_key: read(&path("ca.key"))?,
            front_proxy_ca,
            front_proxy_client,
            dir,
        })
    }

    /// Signs a fresh certificate with the cluster CA: a serving certificate for `sans` when
    /// `server`, else a client certificate for user `cn` in groups `orgs`.
    pub fn issue(
        &self,
        cn: &str,
        orgs: &[&str],
        sans: &[String],
        server: bool,
    ) -> anyhow::Result<Issued> {
        let usage = if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        };
        self.sign(cn, orgs, sans, vec![usage])
    }

    /// Signs a certificate for `sans` that serves and is also a client: what an etcd member
    /// presents to its peers, which connect both ways.
    pub fn issue_peer(&self, cn: &str, sans: &[String]) -> anyhow::Result<Issued> {
        self.sign(
            cn,
            &[],
            sans,
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
    }

    fn sign(
        &self,
        cn: &str,
        orgs: &[&str],
        sans: &[String],
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> anyhow::Result<Issued> {
        let ca_key = KeyPair::from_pem(&self.ca_key).context("parsing the CA key")?;
        let issuer = Issuer::new(ca_params()?, ca_key);
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name.push(DnType::CommonName, cn);
        for o in orgs {
            p.distinguished_name.push(DnType::OrganizationName, *o);
        }
        p.subject_alt_names = sans
            .iter()
            .map(|s| match s.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => s.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()?;
        p.extended_key_usages = usages;
        p.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let cert = p.signed_by(&key, &issuer)?;
        Ok(Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    /// Signs a node's certificate signing request (PEM) with the cluster CA: a client
    /// certificate (signer `kubernetes.io/kube-apiserver-client-kubelet`) or, with `server`, a
    /// serving certificate for its kubelet API (`kubernetes.io/kubelet-serving`). Only requests
    /// for `CN=system:node:<name>, O=system:nodes` are signed. The certificate is valid for
    /// `valid_for`.
    pub fn sign_node_csr(
        &self,
        csr_pem: &str,
        server: bool,
        valid_for: std::time::Duration,
    ) -> anyhow::Result<String> {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .context("parsing the certificate signing request")?;
        let dn = &csr.params.distinguished_name;
        let text = |t: &DnType| match dn.get(t) {
            Some(rcgen::DnValue::Utf8String(s)) => s.clone(),
            Some(rcgen::DnValue::PrintableString(s)) => s.as_str().to_string(),
            _ => String::new(),
        };
        let (cn, org) = (text(&DnType::CommonName), text(&DnType::OrganizationName));
        if !cn.starts_with("system:node:") || org != "system:nodes" {
            anyhow::bail!(
                "only CN=system:node:<name>, O=system:nodes is signed for nodes, not CN={cn}, O={org}"
            );
        }
        csr.params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        if !server {
            csr.params.subject_alt_names.clear();
        }
        csr.params.is_ca = IsCa::NoCa;
        let now = time::OffsetDateTime::now_utc();
        let seconds = i64::try_from(valid_for.as_secs()).unwrap_or(i64::MAX / 2);
        // Backdated for clocks a little behind, by at most a tenth of the lifetime.
        csr.params.not_before = now - time::Duration::seconds((seconds / 10).min(300));
        csr.params.not_after = now + time::Duration::seconds(seconds);
        let ca_key = KeyPair::from_pem(&self.ca_key).context("parsing the CA key")?;
        let issuer = Issuer::new(ca_params()?, ca_key);
        Ok(csr.signed_by(&issuer)?.pem())
    }

    /// Writes `DATA_DIR/admin.kubeconfig` pointing at `server_url` with the admin certificate.
    pub fn write_kubeconfig(&self, data_dir: &Path, server_url: &str) -> anyhow::Result<PathBuf> {
        let admin = Issued {
            cert: self.admin_cert.clone(),
            key: self.admin_key.clone(),
        };
        let kubeconfig = kubeconfig(&self.ca_cert, server_url, "admin", &admin);
        let path = data_dir.join("admin.kubeconfig");
        write_private(&path, &kubeconfig)?;
        Ok(path)
    }
}

/// A kubeconfig for `server_url` (trusting `ca_cert`) as `user` with the client certificate
/// `pair`.
pub fn kubeconfig(ca_cert: &str, server_url: &str, user: &str, pair: &Issued) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: tugboat\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {}\nusers:\n- name: {user:?}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: tugboat\n  context:\n    cluster: tugboat\n    user: {user:?}\n    namespace: default\ncurrent-context: tugboat\n",
        b64(ca_cert),
        b64(&pair.cert),
        b64(&pair.key),
    )
}

/// A kubeconfig for user `user` in groups `groups`, whose client certificate the cluster CA
/// of `data_dir` signs, valid for `valid_for`, for the server at `server_url` (default: the
/// one the admin kubeconfig names).
pub fn user_kubeconfig(
    data_dir: &Path,
    user: &str,
    groups: &[&str],
    valid_for: std::time::Duration,
    server_url: Option<&str>,
) -> anyhow::Result<String> {
    let dir = data_dir.join("pki");
    if !dir.join("ca.key").exists() {
        anyhow::bail!(
            "no cluster CA in {}: give the --data-dir of a server that has run",
            dir.display()
        );
    }
    if user.is_empty() || user.starts_with("system:") && groups.contains(&"system:masters") {
        anyhow::bail!("refusing to issue {user:?} in system:masters; use admin.kubeconfig");
    }
    let ca_cert = read(&dir.join("ca.crt"))?;
    let ca_key = KeyPair::from_pem(&read(&dir.join("ca.key"))?).context("parsing pki/ca.key")?;
    let server_url = match server_url {
        Some(s) => s.to_string(),
        None => {
            let admin = read(&data_dir.join("admin.kubeconfig"))?;
            admin
                .lines()
                .find_map(|l| l.trim().strip_prefix("server: "))
                .map(str::to_string)
                .context("admin.kubeconfig names no server; give --server")?
        }
    };
    let issuer = Issuer::new(ca_params()?, ca_key);
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::CommonName, user);
    for g in groups {
        p.distinguished_name.push(DnType::OrganizationName, *g);
    }
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let seconds = i64::try_from(valid_for.as_secs()).unwrap_or(i64::MAX / 2);
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = now + time::Duration::seconds(seconds);
    let cert = p.signed_by(&key, &issuer)?;
    let pair = Issued {
        cert: cert.pem(),
        key: key.serialize_pem(),
    };
    Ok(kubeconfig(&ca_cert, &server_url, user, &pair))
}
