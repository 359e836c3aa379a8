//! Credentials for test servers, generated on the spot so that nothing checked in expires:
//! a [`Pki`] (a CA, a server certificate for `127.0.0.1` and `localhost`, a client
//! certificate, and a second CA nobody trusts), nkey users ([`NKeyUser`]), and a
//! decentralised setup ([`Operator`]: operator, account with `JetStream`, user JWTs and
//! `.creds` files, signed with nkeys). Each gives the nats-server configuration text to pass
//! to [`super::NatsServer::start_with`]; the files live in a [`TestDir`] removed on drop.
//!
//! The JWTs are built by hand: a header `{"typ":"JWT","alg":"ed25519-nkey"}`, the claims,
//! both base64url without padding, signed by the issuer's nkey (the format of nats-server's
//! `jwt/v2`).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use super::{NEXT_DIR, ServerError, io};

/// A directory of its own under the system's temp dir, removed (with its files) on drop.
#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    /// A fresh, empty directory whose name contains `name`.
    pub fn new(name: &str) -> Result<Self, ServerError> {
        let unique = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("fusebox-creds-{}-{unique}-{name}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(io(format!("creating {}", path.display())))?;
        Ok(Self { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `name` in the directory; its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> Result<PathBuf, ServerError> {
        let path = self.path.join(name);
        std::fs::write(&path, contents).map_err(io(format!("writing {}", path.display())))?;
        Ok(path)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn cert_error(doing: &str) -> impl FnOnce(rcgen::Error) -> ServerError + '_ {
    move |e| ServerError::Io { doing: doing.to_owned(), error: std::io::Error::other(e) }
}

fn nkey_error(doing: &str) -> impl FnOnce(nkeys::error::Error) -> ServerError + '_ {
    move |e| ServerError::Io { doing: doing.to_owned(), error: std::io::Error::other(e.to_string()) }
}

/// A CA and certificates signed by it, as PEM files in a [`TestDir`].
#[derive(Debug)]
pub struct Pki {
    /// The CA certificate: what clients trust.
    pub ca: PathBuf,
    /// The server's certificate, for `127.0.0.1` and `localhost`.
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// A client certificate (common name `fusebox-node`), for mutual TLS.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// A CA of its own that signed nothing here: trusting it alone, a client refuses the
    /// server.
    pub other_ca: PathBuf,
    /// A client certificate signed by [`Pki::other_ca`]: a server verifying clients refuses it.
    pub stranger_cert: PathBuf,
    /// Its key.
    pub stranger_key: PathBuf,
    /// Where the files are.
    pub dir: TestDir,
}

fn ca(name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, ServerError> {
    let doing = "generating a test CA";
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error(doing))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().map_err(cert_error(doing))?;
    CertifiedIssuer::self_signed(params, key).map_err(cert_error(doing))
}

/// A certificate and its key, signed by `issuer`: `(cert PEM, key PEM)`.
fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    name: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> Result<(String, String), ServerError> {
    let doing = "generating a test certificate";
    let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(sans).map_err(cert_error(doing))?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().map_err(cert_error(doing))?;
    let cert = params.signed_by(&key, issuer).map_err(cert_error(doing))?;
    Ok((cert.pem(), key.serialize_pem()))
}

impl Pki {
    /// Generates everything, fresh.
    pub fn generate() -> Result<Self, ServerError> {
        let dir = TestDir::new("pki")?;
        let authority = ca("Fusebox test CA")?;
        let other = ca("Fusebox untrusted CA")?;
        let (server_cert, server_key) =
            leaf(&authority, "fusebox-test-server", &["127.0.0.1", "localhost"], ExtendedKeyUsagePurpose::ServerAuth)?;
        let (client_cert, client_key) = leaf(&authority, "fusebox-node", &[], ExtendedKeyUsagePurpose::ClientAuth)?;
        let (stranger_cert, stranger_key) = leaf(&other, "stranger", &[], ExtendedKeyUsagePurpose::ClientAuth)?;
        Ok(Self {
            ca: dir.write("ca.pem", authority.pem())?,
            server_cert: dir.write("server.pem", server_cert)?,
            server_key: dir.write("server-key.pem", server_key)?,
            client_cert: dir.write("client.pem", client_cert)?,
            client_key: dir.write("client-key.pem", client_key)?,
            other_ca: dir.write("other-ca.pem", other.pem())?,
            stranger_cert: dir.write("stranger.pem", stranger_cert)?,
            stranger_key: dir.write("stranger-key.pem", stranger_key)?,
            dir,
        })
    }

    /// The server's `tls { ... }` block: its certificate; with `verify_clients`, client
    /// certificates signed by the CA are required (mutual TLS); with `handshake_first`, the
    /// TLS handshake comes before the server's INFO.
    pub fn server_tls(&self, verify_clients: bool, handshake_first: bool) -> String {
        let mut block = format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  timeout: 2\n",
            self.server_cert.display(),
            self.server_key.display()
        );
        if verify_clients {
            block += &["  ca_file: \"", &self.ca.display().to_string(), "\"\n  verify: true\n"].concat();
        }
        if handshake_first {
            block += "  handshake_first: true\n";
        }
        block + "}\n"
    }
}

/// An nkey user: the server is told the public key, the client holds the seed.
#[derive(Debug, Clone)]
pub struct NKeyUser {
    /// The seed (`SU...`).
    pub seed: String,
    /// The public key (`U...`).
    pub public: String,
}

impl NKeyUser {
    /// A new user key.
    pub fn generate() -> Result<Self, ServerError> {
        let pair = nkeys::KeyPair::new_user();
        let seed = pair.seed().map_err(nkey_error("encoding an nkey seed"))?;
        Ok(Self { seed, public: pair.public_key() })
    }

    /// An `authorization { users: [...] }` block admitting these users (with every right).
    pub fn server_authorization(users: &[&Self]) -> String {
        let users: Vec<String> = users.iter().map(|u| format!("{{ nkey: {} }}", u.public)).collect();
        format!("authorization {{ users: [ {} ] }}\n", users.join(", "))
    }
}

/// An operator, one account with `JetStream` (unlimited), and the server configuration that
/// trusts them (`operator`, `resolver: MEMORY`, `resolver_preload`).
#[derive(Debug)]
pub struct Operator {
    trust_jwt: String,
    account: nkeys::KeyPair,
    account_jwt: String,
    /// The system account (`JetStream` needs one to start in operator mode).
    system: nkeys::KeyPair,
    system_jwt: String,
}

/// Seconds since the epoch, for `iat`.
fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A JWT of `claims` (`iss` and `sub` added) signed by `issuer`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: &serde_json::Value) -> Result<String, ServerError> {
    let unique = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
    let claims = serde_json::json!({
        // An id unique in this process; nats-server does not check how it was derived.
        "jti": format!("FUSEBOXTEST{}X{unique}X{}", std::process::id(), now_secs()),
        "iat": now_secs(),
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{body}");
    let signature = issuer.sign(signed.as_bytes()).map_err(nkey_error("signing a JWT"))?;
    Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// The text of a `.creds` file, as `nsc generate creds` writes it.
pub fn creds_file_text(user_jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    )
}

impl Operator {
    /// A fresh operator and account.
    pub fn generate() -> Result<Self, ServerError> {
        let operator = nkeys::KeyPair::new_operator();
        let trust_jwt = jwt(
            &operator,
            &operator.public_key(),
            "fusebox-test",
            &serde_json::json!({"type": "operator", "version": 2}),
        )?;
        let account = nkeys::KeyPair::new_account();
        let account_jwt = Self::account_jwt(&operator, &account, "FUSEBOX", true)?;
        let system = nkeys::KeyPair::new_account();
        let system_jwt = Self::account_jwt(&operator, &system, "SYS", false)?;
        Ok(Self { trust_jwt, account, account_jwt, system, system_jwt })
    }

    fn account_jwt(
        operator: &nkeys::KeyPair,
        account: &nkeys::KeyPair,
        name: &str,
        jetstream: bool,
    ) -> Result<String, ServerError> {
        // `JetStream` is enabled for an account by storage limits other than 0.
        let storage = if jetstream { -1 } else { 0 };
        let nats = serde_json::json!({
            "limits": {
                "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true,
                "conn": -1, "leaf": -1,
                "mem_storage": storage, "disk_storage": storage, "streams": storage, "consumer": storage,
                "max_ack_pending": storage,
            },
            "default_permissions": {"pub": {}, "sub": {}},
            "type": "account",
            "version": 2,
        });
        jwt(operator, &account.public_key(), name, &nats)
    }

    /// The server configuration trusting this operator and its accounts.
    pub fn server_config(&self) -> String {
        format!(
            "operator: {}\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {}\n  {}: {}\n}}\n",
            self.trust_jwt,
            self.system.public_key(),
            self.account.public_key(),
            self.account_jwt,
            self.system.public_key(),
            self.system_jwt
        )
    }

    /// The `.creds` text of a new user `name` of the account.
    pub fn user_creds(&self, name: &str) -> Result<String, ServerError> {
        user_creds(&self.account, name)
    }

    /// The `.creds` text of a user of an account this operator never signed: the server
    /// refuses it.
    pub fn stranger_creds(name: &str) -> Result<String, ServerError> {
        user_creds(&nkeys::KeyPair::new_account(), name)
    }
}

fn user_creds(account: &nkeys::KeyPair, name: &str) -> Result<String, ServerError> {
    let user = nkeys::KeyPair::new_user();
    let nats = serde_json::json!({
        "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2,
    });
    let user_jwt = jwt(account, &user.public_key(), name, &nats)?;
    let seed = user.seed().map_err(nkey_error("encoding an nkey seed"))?;
    Ok(creds_file_text(&user_jwt, &seed))
}
