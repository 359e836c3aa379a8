//! How a node (and the `fusebox` CLI) proves who it is to NATS and secures the connection:
//! [`Auth`] (user/password, token, nkey seed, `.creds` file of a decentralised JWT setup),
//! [`Tls`] (a custom CA, a client certificate for mutual TLS, TLS required or first), both
//! together a [`ConnectionSettings`] applied to async-nats' `ConnectOptions`. Every file is
//! read and checked when the settings are applied, before any connection is tried, so a
//! missing file or a bad seed is an [`AuthError`] naming the setting and the file rather than
//! a handshake failure.
//!
//! It also owns the standard ways to find servers and settings without code: `NATS_URL`
//! ([`servers_from_env`]) and the nats CLI's contexts ([`NatsContext`]), and the hooks for
//! teams that configure async-nats themselves ([`ConnectHook`]; or
//! `NatsTransport::with_client`).
//!
//! ```no_run
//! use std::path::PathBuf;
//! use transport_nats::nats::{Auth, NatsConfig, NatsTransport, Tls};
//! # use breaker_actors::machine::NodeId;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = NatsConfig::new(vec!["tls://nats.internal:4222".into()], NodeId::new("checkout-7")?);
//! // Decentralised auth: the user JWT and its nkey seed, as `nsc` writes them.
//! config.connection.auth = Auth::CredsFile(PathBuf::from("/etc/fusebox/node.creds"));
//! // Or: Auth::NKeyFile(path), Auth::Token(token), Auth::user_password("node-7", "secret").
//! config.connection.tls = Tls {
//!     ca: Some(PathBuf::from("/etc/fusebox/ca.pem")),
//!     client_cert: Some(PathBuf::from("/etc/fusebox/node.pem")),
//!     client_key: Some(PathBuf::from("/etc/fusebox/node-key.pem")),
//!     ..Tls::default()
//! };
//! let transport = NatsTransport::connect(config).await?;
//! # let _ = transport;
//! # Ok(())
//! # }
//! ```
//!
//! Servers, credentials and TLS of a nats CLI context (`nats context save prod ...`), and
//! `NATS_URL` when the server list is empty:
//!
//! ```no_run
//! # use breaker_actors::machine::NodeId;
//! # use transport_nats::nats::{NatsConfig, NatsTransport};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = NodeId::new("checkout-7")?;
//! let config = match NatsConfig::from_context(Some("prod"), node.clone())? {
//!     Some(config) => config,
//!     None => NatsConfig::new(Vec::new(), node), // connects to NATS_URL
//! };
//! let transport = NatsTransport::connect(config).await?;
//! # let _ = transport;
//! # Ok(())
//! # }
//! ```
//!
//! Your own async-nats configuration: a hook that shapes each of the node's two connections
//! (Fusebox's timeouts and connection-state callback stay), or a client of your own that
//! carries everything (lease upkeep included: see `NatsTransport::with_client`):
//!
//! ```no_run
//! # use breaker_actors::machine::NodeId;
//! use transport_nats::async_nats;
//! use transport_nats::nats::{ConnectHook, ConnectRole, NatsConfig, NatsTransport};
//! # fn main() {}
//! async fn start(rustls_config: async_nats::rustls::ClientConfig) -> Result<(), Box<dyn std::error::Error>> {
//!     let mut config = NatsConfig::new(vec!["tls://nats.internal:4222".into()], NodeId::new("checkout-7")?);
//!     config.connect_hook = Some(ConnectHook::new(move |role, options| {
//!         let options = options.tls_client_config(rustls_config.clone());
//!         match role {
//!             ConnectRole::Main => options,
//!             ConnectRole::Leases => options.read_buffer_capacity(4096),
//!         }
//!     }));
//!     let transport = NatsTransport::connect(config).await?;
//!
//!     // Or bring the client: one connection for every role.
//!     let client = async_nats::ConnectOptions::with_token("s3cret".into()).connect("nats.internal:4222").await?;
//!     let shared = NatsTransport::with_client(client, NatsConfig::new(Vec::new(), NodeId::new("checkout-8")?)).await?;
//! #     let _ = (transport, shared);
//! #     Ok(())
//! }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_nats::ConnectOptions;
use async_nats::rustls::pki_types::pem::PemObject;
use async_nats::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// How the client authenticates. Secrets are never printed by `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// No credentials (a server without authorization, or TLS client certificates alone
    /// when the server maps certificates to users: `verify_and_map`).
    #[default]
    None,
    /// A user and a password (`authorization { users: [...] }`).
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// A token (`authorization { token: ... }`).
    Token(String),
    /// An nkey user seed (`SU...`): the server knows the public key (`U...`) and checks a
    /// signature of its nonce.
    NKeySeed(String),
    /// A file holding an nkey user seed (as `nk -gen user` or `nsc` write it).
    NKeyFile(PathBuf),
    /// The text of a `.creds` file: a user JWT and its nkey seed (operator mode,
    /// decentralised auth).
    Creds(String),
    /// A `.creds` file (as `nsc generate creds` writes it).
    CredsFile(PathBuf),
}

impl Auth {
    /// [`Auth::UserPassword`].
    pub fn user_password(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self::UserPassword { user: user.into(), password: password.into() }
    }

    /// Whether any credentials are set.
    pub fn is_some(&self) -> bool {
        *self != Self::None
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::UserPassword { user, .. } => {
                f.debug_struct("UserPassword").field("user", user).finish_non_exhaustive()
            }
            Self::Token(_) => f.write_str("Token(..)"),
            Self::NKeySeed(_) => f.write_str("NKeySeed(..)"),
            Self::NKeyFile(path) => f.debug_tuple("NKeyFile").field(path).finish(),
            Self::Creds(_) => f.write_str("Creds(..)"),
            Self::CredsFile(path) => f.debug_tuple("CredsFile").field(path).finish(),
        }
    }
}

/// TLS settings. All default to off: a plain connection, upgraded to TLS when the server
/// requires it (checked against the system's root certificates).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// PEM file of the CA certificates the server's certificate must chain to, instead of
    /// the system's roots.
    pub ca: Option<PathBuf>,
    /// PEM file of the client certificate (mutual TLS: the server's `verify: true`); needs
    /// [`Tls::client_key`].
    pub client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    pub client_key: Option<PathBuf>,
    /// Refuse a server that does not offer TLS (otherwise TLS is used when the server asks
    /// for it or a URL is `tls://`).
    pub required: bool,
    /// The TLS handshake before anything else (the server's `handshake_first`); implies
    /// [`Tls::required`].
    pub first: bool,
}

impl Tls {
    /// Whether any TLS setting is made.
    pub fn is_set(&self) -> bool {
        *self != Self::default()
    }
}

/// How to authenticate and secure each connection: shared by `NatsConfig` and the CLI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// Credentials.
    pub auth: Auth,
    /// TLS.
    pub tls: Tls,
}

impl ConnectionSettings {
    /// `options` with these credentials and TLS settings, after reading and checking every
    /// file they name.
    pub fn apply(&self, options: ConnectOptions) -> Result<ConnectOptions, AuthError> {
        let options = self.apply_auth(options)?;
        self.apply_tls(options)
    }

    fn apply_auth(&self, options: ConnectOptions) -> Result<ConnectOptions, AuthError> {
        Ok(match &self.auth {
            Auth::None => options,
            Auth::UserPassword { user, password } => options.user_and_password(user.clone(), password.clone()),
            Auth::Token(token) => options.token(token.clone()),
            Auth::NKeySeed(seed) => options.nkey(user_seed(seed.trim(), None)?),
            Auth::NKeyFile(path) => {
                let text = read_text(Setting::NKey, path)?;
                let seed = text.lines().map(str::trim).find(|l| l.starts_with('S') && !l.contains(' ')).unwrap_or("");
                options.nkey(user_seed(seed, Some(path))?)
            }
            Auth::Creds(text) => creds(options, text, None)?,
            Auth::CredsFile(path) => creds(options, &read_text(Setting::Creds, path)?, Some(path))?,
        })
    }

    fn apply_tls(&self, mut options: ConnectOptions) -> Result<ConnectOptions, AuthError> {
        let tls = &self.tls;
        if let Some(ca) = &tls.ca {
            pem_certificates(Setting::TlsCa, ca)?;
            options = options.add_root_certificates(ca.clone());
        }
        match (&tls.client_cert, &tls.client_key) {
            (Some(cert), Some(key)) => {
                pem_certificates(Setting::TlsCert, cert)?;
                let bytes = read(Setting::TlsKey, key)?;
                PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| AuthError::Invalid {
                    setting: Setting::TlsKey,
                    path: Some(key.clone()),
                    problem: format!("no private key in the file ({e})"),
                })?;
                options = options.add_client_certificate(cert.clone(), key.clone());
            }
            (Some(_), None) => return Err(AuthError::Incomplete { given: Setting::TlsCert, missing: Setting::TlsKey }),
            (None, Some(_)) => return Err(AuthError::Incomplete { given: Setting::TlsKey, missing: Setting::TlsCert }),
            (None, None) => {}
        }
        if tls.required {
            options = options.require_tls(true);
        }
        if tls.first {
            options = options.tls_first();
        }
        Ok(options)
    }
}

/// A setting that names a file or holds a secret, for error messages (`Display` is the
/// `NatsConfig` path; the CLI names its flag beside it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// [`Auth::CredsFile`] / [`Auth::Creds`] (`--creds`).
    Creds,
    /// [`Auth::NKeyFile`] / [`Auth::NKeySeed`] (`--nkey`).
    NKey,
    /// [`Tls::ca`] (`--tls-ca`).
    TlsCa,
    /// [`Tls::client_cert`] (`--tls-cert`).
    TlsCert,
    /// [`Tls::client_key`] (`--tls-key`).
    TlsKey,
    /// A nats CLI context file (`--context`).
    Context,
}

impl Setting {
    /// The CLI flag that sets it.
    pub fn flag(self) -> &'static str {
        match self {
            Self::Creds => "--creds",
            Self::NKey => "--nkey",
            Self::TlsCa => "--tls-ca",
            Self::TlsCert => "--tls-cert",
            Self::TlsKey => "--tls-key",
            Self::Context => "--context",
        }
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Creds => "auth creds",
            Self::NKey => "auth nkey seed",
            Self::TlsCa => "tls.ca",
            Self::TlsCert => "tls.client_cert",
            Self::TlsKey => "tls.client_key",
            Self::Context => "nats context",
        })
    }
}

/// Why connection settings could not be applied: something wrong with a file or a secret,
/// found before connecting.
#[derive(Debug)]
pub enum AuthError {
    /// A file could not be read.
    Unreadable {
        /// Which setting named it.
        setting: Setting,
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A file or value was read but is not what the setting needs (no certificate in a
    /// CA file, not a user seed, a `.creds` file without its JWT, a context that is not
    /// JSON).
    Invalid {
        /// Which setting.
        setting: Setting,
        /// The file, when it came from one.
        path: Option<PathBuf>,
        /// What is wrong.
        problem: String,
    },
    /// One half of a pair was given without the other (a client certificate without its key).
    Incomplete {
        /// The one given.
        given: Setting,
        /// The one missing.
        missing: Setting,
    },
    /// The named nats context does not exist.
    NoContext {
        /// Its name.
        name: String,
        /// Where it was looked for.
        path: PathBuf,
    },
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable { setting, path, error } => {
                write!(f, "{setting} {}: cannot read it: {error}", path.display())
            }
            Self::Invalid { setting, path: Some(path), problem } => {
                write!(f, "{setting} {}: {problem}", path.display())
            }
            Self::Invalid { setting, path: None, problem } => write!(f, "{setting}: {problem}"),
            Self::Incomplete { given, missing } => write!(f, "{given} is set but {missing} is not: both are needed"),
            Self::NoContext { name, path } => write!(f, "no nats context {name:?}: {} does not exist", path.display()),
        }
    }
}

impl std::error::Error for AuthError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unreadable { error, .. } => Some(error),
            Self::Invalid { .. } | Self::Incomplete { .. } | Self::NoContext { .. } => None,
        }
    }
}

impl AuthError {
    /// The setting at fault.
    pub fn setting(&self) -> Setting {
        match self {
            Self::Unreadable { setting, .. }
            | Self::Invalid { setting, .. }
            | Self::Incomplete { given: setting, .. } => *setting,
            Self::NoContext { .. } => Setting::Context,
        }
    }
}

fn read(setting: Setting, path: &Path) -> Result<Vec<u8>, AuthError> {
    std::fs::read(path).map_err(|error| AuthError::Unreadable { setting, path: path.to_owned(), error })
}

fn read_text(setting: Setting, path: &Path) -> Result<String, AuthError> {
    let bytes = read(setting, path)?;
    String::from_utf8(bytes).map_err(|_| AuthError::Invalid {
        setting,
        path: Some(path.to_owned()),
        problem: "not UTF-8 text".to_owned(),
    })
}

/// `seed` if it is a valid nkey user seed.
fn user_seed(seed: &str, path: Option<&Path>) -> Result<String, AuthError> {
    let invalid =
        |problem: String| AuthError::Invalid { setting: Setting::NKey, path: path.map(Path::to_owned), problem };
    if seed.is_empty() {
        return Err(invalid("no nkey seed (a line starting with SU)".to_owned()));
    }
    if let Err(e) = nkeys::KeyPair::from_seed(seed) {
        return Err(invalid(format!("not a valid nkey seed: {e}")));
    }
    if !seed.starts_with("SU") {
        let kind = seed.get(..2).unwrap_or(seed);
        return Err(invalid(format!("a seed of kind {kind}, not a user seed (SU...)")));
    }
    Ok(seed.to_owned())
}

fn creds(options: ConnectOptions, text: &str, path: Option<&Path>) -> Result<ConnectOptions, AuthError> {
    options.credentials(text).map_err(|e| AuthError::Invalid {
        setting: Setting::Creds,
        path: path.map(Path::to_owned),
        problem: format!("not a .creds file (a user JWT and its nkey seed): {e}"),
    })
}

fn pem_certificates(setting: Setting, path: &Path) -> Result<(), AuthError> {
    let bytes = read(setting, path)?;
    let invalid = |problem: String| AuthError::Invalid { setting, path: Some(path.to_owned()), problem };
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("not PEM certificates: {e}")))?;
    if certificates.is_empty() {
        return Err(invalid("no certificate in the file (PEM, -----BEGIN CERTIFICATE-----)".to_owned()));
    }
    Ok(())
}

/// Server URLs from a comma-separated list (`NATS_URL`'s format), blanks dropped.
pub fn split_urls(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect()
}

/// The server URLs of the environment variable `NATS_URL` (comma-separated), empty when
/// it is unset: the fallback when no server is given.
pub fn servers_from_env() -> Vec<String> {
    std::env::var("NATS_URL").map(|list| split_urls(&list)).unwrap_or_default()
}

/// Which connection of a node a [`ConnectHook`] is building.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectRole {
    /// Everything but lease upkeep: reports, the decision watch, the feed, writes, configs.
    Main,
    /// Lease upkeep alone, so that renewals never queue behind the node's other traffic.
    Leases,
}

/// A function that gets the options the transport built for one of its connections (name,
/// timeouts, reconnection policy, [`ConnectionSettings`]) and returns the options to connect
/// with: for settings this crate has no field for (an auth callback, a `rustls`
/// `ClientConfig`, a local address). Called once per connection ([`ConnectRole`]). The
/// transport's connection-state callback is installed after the hook, so an event
/// callback set by the hook is replaced.
#[derive(Clone)]
pub struct ConnectHook(Arc<dyn Fn(ConnectRole, ConnectOptions) -> ConnectOptions + Send + Sync>);

impl ConnectHook {
    /// A hook from a function.
    pub fn new(hook: impl Fn(ConnectRole, ConnectOptions) -> ConnectOptions + Send + Sync + 'static) -> Self {
        Self(Arc::new(hook))
    }

    /// Runs the hook.
    pub fn call(&self, role: ConnectRole, options: ConnectOptions) -> ConnectOptions {
        (self.0)(role, options)
    }
}

impl fmt::Debug for ConnectHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnectHook(..)")
    }
}

/// A nats CLI context (`nats context save`): `<config dir>/nats/context/<name>.json`, where
/// the config dir is `$XDG_CONFIG_HOME`, else `~/.config`. Only the fields Fusebox uses;
/// the others are ignored. Empty strings mean unset, as the nats CLI writes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct NatsContext {
    /// Server URLs, comma-separated.
    pub url: String,
    /// User name (with `password`).
    pub user: String,
    /// Password.
    pub password: String,
    /// A `.creds` file.
    pub creds: String,
    /// A file holding an nkey user seed.
    pub nkey: String,
    /// A token.
    pub token: String,
    /// The client certificate (PEM).
    pub cert: String,
    /// The client certificate's key (PEM).
    pub key: String,
    /// The CA certificates (PEM).
    pub ca: String,
    /// TLS handshake first.
    pub tls_first: bool,
}

impl NatsContext {
    /// The nats CLI's configuration directory: `$XDG_CONFIG_HOME/nats`, else
    /// `$HOME/.config/nats` (`None` without either).
    pub fn config_dir() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".config")))?;
        Some(base.join("nats"))
    }

    /// The selected context's name: `NATS_CONTEXT`, else the one named in
    /// `<config dir>/context.txt`, else none.
    pub fn selected(config_dir: Option<&Path>) -> Option<String> {
        if let Some(name) = std::env::var("NATS_CONTEXT").ok().filter(|n| !n.trim().is_empty()) {
            return Some(name.trim().to_owned());
        }
        let text = std::fs::read_to_string(config_dir?.join("context.txt")).ok()?;
        Some(text.trim().to_owned()).filter(|n| !n.is_empty())
    }

    /// The context `name` in `config_dir` (see [`NatsContext::config_dir`]).
    pub fn load(config_dir: &Path, name: &str) -> Result<Self, AuthError> {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(AuthError::Invalid {
                setting: Setting::Context,
                path: None,
                problem: format!("{name:?} is not a context name"),
            });
        }
        let path = config_dir.join("context").join(format!("{name}.json"));
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(AuthError::NoContext { name: name.to_owned(), path });
            }
            Err(error) => return Err(AuthError::Unreadable { setting: Setting::Context, path, error }),
        };
        serde_json::from_str(&text).map_err(|e| AuthError::Invalid {
            setting: Setting::Context,
            path: Some(path),
            problem: format!("not a nats context (JSON): {e}"),
        })
    }

    /// The selected context ([`NatsContext::selected`]) in the default directory, if any.
    pub fn load_selected() -> Result<Option<Self>, AuthError> {
        let dir = Self::config_dir();
        let Some(name) = Self::selected(dir.as_deref()) else { return Ok(None) };
        let dir = dir.unwrap_or_else(|| PathBuf::from(".config/nats"));
        Self::load(&dir, &name).map(Some)
    }

    /// The context's server URLs.
    pub fn servers(&self) -> Vec<String> {
        split_urls(&self.url)
    }

    /// The context's credentials and TLS settings. Of several credentials the first of
    /// creds, nkey, token, user/password counts, as in the nats CLI. A path starting with
    /// `~/` is in the home directory.
    pub fn settings(&self) -> ConnectionSettings {
        let auth = if !self.creds.is_empty() {
            Auth::CredsFile(expand(&self.creds))
        } else if !self.nkey.is_empty() {
            Auth::NKeyFile(expand(&self.nkey))
        } else if !self.token.is_empty() {
            Auth::Token(self.token.clone())
        } else if !self.user.is_empty() {
            Auth::user_password(self.user.clone(), self.password.clone())
        } else {
            Auth::None
        };
        let path = |p: &str| (!p.is_empty()).then(|| expand(p));
        let tls = Tls {
            ca: path(&self.ca),
            client_cert: path(&self.cert),
            client_key: path(&self.key),
            required: false,
            first: self.tls_first,
        };
        ConnectionSettings { auth, tls }
    }
}

fn expand(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fusebox-connect-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn applied(auth: Auth, tls: Tls) -> Result<(), AuthError> {
        ConnectionSettings { auth, tls }.apply(ConnectOptions::new()).map(drop)
    }

    #[test]
    fn bad_files_and_seeds_name_the_setting_and_the_file() {
        let dir = dir("bad");
        let missing = dir.join("missing.creds");
        let e = applied(Auth::CredsFile(missing.clone()), Tls::default()).unwrap_err();
        assert!(matches!(e, AuthError::Unreadable { setting: Setting::Creds, .. }), "{e:?}");
        assert!(e.to_string().starts_with(&format!("auth creds {}: cannot read it: ", missing.display())), "{e}");

        let garbage = dir.join("garbage.nk");
        std::fs::write(&garbage, "SUnotaseed\n").unwrap();
        let e = applied(Auth::NKeyFile(garbage.clone()), Tls::default()).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!("auth nkey seed {}: not a valid nkey seed", garbage.display())),
            "{e}"
        );
        let account = nkeys::KeyPair::new_account().seed().unwrap();
        let e = applied(Auth::NKeySeed(account), Tls::default()).unwrap_err();
        assert!(e.to_string().contains("a seed of kind SA, not a user seed"), "{e}");
        let user = nkeys::KeyPair::new_user().seed().unwrap();
        applied(Auth::NKeySeed(user), Tls::default()).unwrap();

        let e = applied(Auth::Creds("hello".into()), Tls::default()).unwrap_err();
        assert!(e.to_string().starts_with("auth creds: not a .creds file"), "{e}");

        let not_pem = dir.join("ca.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let e = applied(Auth::None, Tls { ca: Some(not_pem.clone()), ..Tls::default() }).unwrap_err();
        assert_eq!(e.setting(), Setting::TlsCa);
        assert!(e.to_string().contains("no certificate in the file"), "{e}");
        let e = applied(Auth::None, Tls { client_cert: Some(not_pem), ..Tls::default() }).unwrap_err();
        assert_eq!(e.to_string(), "tls.client_cert is set but tls.client_key is not: both are needed");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let printed = format!("{:?}", Auth::user_password("u", "hunter2"));
        assert!(printed.contains("\"u\"") && !printed.contains("hunter2"), "{printed}");
        assert_eq!(format!("{:?}", Auth::Token("hunter2".into())), "Token(..)");
    }

    #[test]
    fn contexts_read_like_the_nats_cli_writes_them() {
        let dir = dir("ctx");
        std::fs::create_dir_all(dir.join("context")).unwrap();
        let json = r#"{"description":"","url":"nats://a:4222, nats://b:4222","token":"","user":"u","password":"p",
            "creds":"/x/node.creds","nkey":"","cert":"","key":"","ca":"/x/ca.pem","nsc":"","tls_first":true}"#;
        std::fs::write(dir.join("context/prod.json"), json).unwrap();
        let context = NatsContext::load(&dir, "prod").unwrap();
        assert_eq!(context.servers(), ["nats://a:4222", "nats://b:4222"]);
        let settings = context.settings();
        assert_eq!(settings.auth, Auth::CredsFile("/x/node.creds".into()), "creds come before user/password");
        assert_eq!(settings.tls, Tls { ca: Some("/x/ca.pem".into()), first: true, ..Tls::default() });
        let missing = NatsContext::load(&dir, "nope").unwrap_err();
        assert!(matches!(missing, AuthError::NoContext { .. }), "{missing}");
        assert!(NatsContext::load(&dir, "../prod").is_err());
        std::fs::write(dir.join("context/bad.json"), "{").unwrap();
        let bad = NatsContext::load(&dir, "bad").unwrap_err();
        assert!(bad.to_string().contains("not a nats context (JSON)"), "{bad}");
        std::fs::write(dir.join("context.txt"), "prod\n").unwrap();
        if std::env::var_os("NATS_CONTEXT").is_none() {
            assert_eq!(NatsContext::selected(Some(&dir)).as_deref(), Some("prod"));
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn url_lists_split_like_nats_url() {
        assert_eq!(split_urls(" nats://a:1,,nats://b:2 "), ["nats://a:1", "nats://b:2"]);
        assert!(split_urls("").is_empty());
    }
}
