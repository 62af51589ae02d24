//! Server-side client authentication: SCRAM-SHA-256 and md5 verification.
//!
//! tenantgate authenticates its clients itself, with the passwords from
//! `[[users]]` in the routing config, before it opens its own connections to
//! Postgres. Everything here is sans-IO: the session code reads the client's
//! messages, hands their bodies to these state machines and writes back what
//! they return (`AuthenticationSASLContinue`, `AuthenticationSASLFinal`, ...).
//!
//! SCRAM follows RFC 5802/7677 the way Postgres implements it: no channel
//! binding (tenantgate does not terminate TLS), the user name inside the SCRAM
//! messages is ignored (the startup packet's `user` counts), and stored
//! passwords may be plain text, a Postgres `SCRAM-SHA-256$...` verifier or a
//! Postgres `md5...` hash.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::digest::CtOutput;
use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use rand::Rng;
use sha2::{Digest, Sha256};

/// The SASL mechanism name tenantgate offers in `AuthenticationSASL`.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

/// The channel-binding variant of SCRAM; never offered (no TLS), always refused.
const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// Length of a SHA-256 output and of the SCRAM keys.
const KEY_LEN: usize = 32;

/// Random bytes in the server's part of the SCRAM nonce (as Postgres).
const SERVER_NONCE_LEN: usize = 18;

/// Salt length used by [`ScramVerifier::mock`] (as Postgres).
const MOCK_SALT_LEN: usize = 16;

/// Iteration count used by [`ScramVerifier::mock`] (Postgres's default).
const MOCK_ITERATIONS: u32 = 4096;

/// Prefix of a Postgres SCRAM-SHA-256 verifier.
const SCRAM_PREFIX: &str = "SCRAM-SHA-256$";

/// Prefix of a Postgres md5 password hash.
const MD5_PREFIX: &str = "md5";

/// Hex digits in an md5 hash.
const MD5_HEX_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// A `password` from the config that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    /// The password is the empty string (Postgres refuses those as well).
    #[error("password is empty")]
    Empty,
    /// The value starts with `SCRAM-SHA-256$` but is not a valid verifier.
    #[error("malformed SCRAM-SHA-256 verifier: {0}")]
    MalformedScram(&'static str),
    /// The value looks like an md5 hash but is not lowercase hex.
    #[error("malformed md5 password hash: the 32 digits after `md5` must be lowercase hex")]
    MalformedMd5,
}

/// Why a client's authentication attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The client proved knowledge of a different password (or none at all).
    #[error("password authentication failed")]
    WrongPassword,
    /// The client sent a malformed or unsupported authentication message.
    #[error("authentication protocol violation: {0}")]
    Protocol(String),
    /// md5 authentication was attempted for a user whose stored password is a
    /// SCRAM verifier, from which the md5 hash cannot be derived.
    #[error("md5 authentication is impossible with a SCRAM-SHA-256 stored password")]
    Md5Unsupported,
}

fn protocol(message: impl Into<String>) -> AuthError {
    AuthError::Protocol(message.into())
}

/// A SCRAM-SHA-256 verifier: salt, iteration count, StoredKey and ServerKey.
///
/// Its text form is Postgres's `rolpassword` format,
/// `SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>`.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; KEY_LEN],
    server_key: [u8; KEY_LEN],
}

impl ScramVerifier {
    /// Parses a verifier in Postgres's `SCRAM-SHA-256$...` format.
    pub fn parse(s: &str) -> Result<Self, AuthConfigError> {
        let rest = s
            .strip_prefix(SCRAM_PREFIX)
            .ok_or(AuthConfigError::MalformedScram(
                "must start with `SCRAM-SHA-256$`",
            ))?;
        let (params, keys) = rest.split_once('$').ok_or(AuthConfigError::MalformedScram(
            "expected `<iterations>:<salt>$<StoredKey>:<ServerKey>`",
        ))?;
        let (iterations, salt) = params
            .split_once(':')
            .ok_or(AuthConfigError::MalformedScram(
                "expected `<iterations>:<salt>` after `SCRAM-SHA-256$`",
            ))?;
        let (stored_key, server_key) = keys.split_once(':').ok_or(
            AuthConfigError::MalformedScram("expected `<StoredKey>:<ServerKey>` after the salt"),
        )?;

        let iterations = iterations.parse::<u32>().ok().filter(|&i| i > 0).ok_or(
            AuthConfigError::MalformedScram("the iteration count must be a positive integer"),
        )?;
        let salt = BASE64
            .decode(salt)
            .map_err(|_| AuthConfigError::MalformedScram("the salt is not valid base64"))?;
        if salt.is_empty() {
            return Err(AuthConfigError::MalformedScram("the salt is empty"));
        }
        let stored_key = decode_key(stored_key).ok_or(AuthConfigError::MalformedScram(
            "StoredKey must be 32 bytes of base64",
        ))?;
        let server_key = decode_key(server_key).ok_or(AuthConfigError::MalformedScram(
            "ServerKey must be 32 bytes of base64",
        ))?;
        Ok(Self {
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }

    /// Derives a verifier from a plain-text password with a random 16-byte salt
    /// and 4096 iterations, SASLprep-normalising the password as Postgres does.
    pub fn from_password(password: &str) -> Result<Self, AuthConfigError> {
        Self::parse(&postgres_protocol::password::scram_sha_256(
            password.as_bytes(),
        ))
    }

    /// [`ScramVerifier::mock`] with this process's secret: what a client
    /// logging in as an unknown `username` is challenged with.
    pub fn unknown_user(username: &str) -> Self {
        static SECRET: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
        let secret = SECRET.get_or_init(|| {
            let mut s = [0u8; 32];
            rand::rng().fill_bytes(&mut s);
            s
        });
        Self::mock(username, secret)
    }

    /// A verifier that no password matches, for running a fake exchange with a
    /// client whose user does not exist so that it cannot tell (as Postgres).
    ///
    /// The salt is derived from `username` and `secret`, so repeated attempts
    /// for one user see the same salt; `secret` must be one nobody outside
    /// knows (a fixed one would let anyone compute the salts of unknown users
    /// and so tell them from real ones): see [`ScramVerifier::unknown_user`].
    pub fn mock(username: &str, secret: &[u8]) -> Self {
        let digest = Sha256::new()
            .chain_update(secret)
            .chain_update(username.as_bytes())
            .finalize();
        let mut stored_key = [0u8; KEY_LEN];
        let mut server_key = [0u8; KEY_LEN];
        let mut rng = rand::rng();
        rng.fill_bytes(&mut stored_key);
        rng.fill_bytes(&mut server_key);
        Self {
            iterations: MOCK_ITERATIONS,
            salt: digest[..MOCK_SALT_LEN].to_vec(),
            stored_key,
            server_key,
        }
    }

    /// The PBKDF2 iteration count.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// The PBKDF2 salt.
    pub fn salt(&self) -> &[u8] {
        &self.salt
    }
}

impl fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .field("salt", &BASE64.encode(&self.salt))
            .finish_non_exhaustive()
    }
}

fn decode_key(s: &str) -> Option<[u8; KEY_LEN]> {
    BASE64.decode(s).ok()?.try_into().ok()
}

/// A user's password as configured: plain text, SCRAM verifier or md5 hash.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredPassword {
    kind: StoredKind,
}

#[derive(Clone, PartialEq, Eq)]
enum StoredKind {
    /// Plain text, with a SCRAM verifier derived once at parse time.
    Plain {
        password: String,
        scram: ScramVerifier,
    },
    /// A Postgres SCRAM-SHA-256 verifier.
    Scram(ScramVerifier),
    /// `md5(password || username)` as 32 lowercase hex digits.
    Md5 { hex: String },
}

impl StoredPassword {
    /// Parses the `password` of a `[[users]]` entry.
    ///
    /// A value starting with `SCRAM-SHA-256$` must be a valid verifier and one
    /// of the form `md5` + 32 hex digits must be lowercase; anything else
    /// non-empty is a plain-text password. Plain text costs one PBKDF2 run
    /// here (to derive its SCRAM verifier) and none per login.
    pub fn parse(s: &str) -> Result<Self, AuthConfigError> {
        if s.is_empty() {
            return Err(AuthConfigError::Empty);
        }
        let kind = if s.starts_with(SCRAM_PREFIX) {
            StoredKind::Scram(ScramVerifier::parse(s)?)
        } else if let Some(hex) = s
            .strip_prefix(MD5_PREFIX)
            .filter(|h| h.len() == MD5_HEX_LEN && h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            if hex.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(AuthConfigError::MalformedMd5);
            }
            StoredKind::Md5 {
                hex: hex.to_owned(),
            }
        } else {
            StoredKind::Plain {
                password: s.to_owned(),
                scram: ScramVerifier::from_password(s)?,
            }
        };
        Ok(Self { kind })
    }

    /// The verifier to run SCRAM-SHA-256 against; `None` for an md5 hash.
    pub fn scram_verifier(&self) -> Option<&ScramVerifier> {
        match &self.kind {
            StoredKind::Plain { scram, .. } | StoredKind::Scram(scram) => Some(scram),
            StoredKind::Md5 { .. } => None,
        }
    }

    /// Whether SCRAM-SHA-256 can be used (plain text or a SCRAM verifier).
    pub fn supports_scram(&self) -> bool {
        self.scram_verifier().is_some()
    }

    /// Whether md5 can be used (plain text or an md5 hash, not a SCRAM verifier).
    pub fn supports_md5(&self) -> bool {
        !matches!(self.kind, StoredKind::Scram(_))
    }
}

impl fmt::Debug for StoredPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            StoredKind::Plain { .. } => "plain",
            StoredKind::Scram(_) => "scram-sha-256",
            StoredKind::Md5 { .. } => "md5",
        };
        f.debug_struct("StoredPassword")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

/// A fresh random salt for `AuthenticationMD5Password`.
pub fn md5_salt() -> [u8; 4] {
    let mut salt = [0u8; 4];
    rand::rng().fill_bytes(&mut salt);
    salt
}

/// Checks a client's md5 `PasswordMessage` body against the stored password.
///
/// `response` is `md5` followed by `hex(md5(hex(md5(password || user)) || salt))`;
/// one trailing NUL (the message's string terminator) is allowed. A malformed
/// response is a wrong password, as in Postgres.
pub fn md5_verify(
    user: &str,
    stored: &StoredPassword,
    salt: [u8; 4],
    response: &[u8],
) -> Result<(), AuthError> {
    let inner_hex = match &stored.kind {
        StoredKind::Plain { password, .. } => hex_lower(
            &Md5::new()
                .chain_update(password.as_bytes())
                .chain_update(user.as_bytes())
                .finalize(),
        ),
        StoredKind::Md5 { hex } => hex.clone(),
        StoredKind::Scram(_) => return Err(AuthError::Md5Unsupported),
    };
    let expected = Md5::new()
        .chain_update(inner_hex.as_bytes())
        .chain_update(salt)
        .finalize();

    let response = response.strip_suffix(b"\0").unwrap_or(response);
    let got = response
        .strip_prefix(MD5_PREFIX.as_bytes())
        .and_then(decode_hex_lower::<16>)
        .ok_or(AuthError::WrongPassword)?;
    if CtOutput::<Md5>::new(expected) == CtOutput::<Md5>::new(got.into()) {
        Ok(())
    } else {
        Err(AuthError::WrongPassword)
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

fn decode_hex_lower<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    if hex.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// Splits a `SASLInitialResponse` body (the bytes after the 5-byte tag and
/// length header) into the mechanism name and the client-first-message.
///
/// A data length of -1 means no initial response at all: `None` (the
/// server then sends an empty challenge and the client-first-message comes
/// in the next message).
pub fn parse_sasl_initial(body: &[u8]) -> Result<(&str, Option<&[u8]>), AuthError> {
    let nul = body
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| protocol("SASLInitialResponse: unterminated mechanism name"))?;
    let mechanism = std::str::from_utf8(&body[..nul])
        .map_err(|_| protocol("SASLInitialResponse: mechanism name is not UTF-8"))?;
    let rest = &body[nul + 1..];
    let (len, data) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| protocol("SASLInitialResponse: missing data length"))?;
    match i32::from_be_bytes(*len) {
        -1 if data.is_empty() => Ok((mechanism, None)),
        len if usize::try_from(len).is_ok_and(|len| len == data.len()) => {
            Ok((mechanism, Some(data)))
        }
        _ => Err(protocol(
            "SASLInitialResponse: data length does not match the message",
        )),
    }
}

/// The server side of one SCRAM-SHA-256 exchange (no channel binding).
///
/// Drive it with the client's `SASLInitialResponse` ([`ScramServer::client_first`],
/// reply with `AuthenticationSASLContinue`) and `SASLResponse`
/// ([`ScramServer::client_final`], reply with `AuthenticationSASLFinal` and then
/// `AuthenticationOk`). Any error ends the exchange; later calls fail.
pub struct ScramServer {
    verifier: ScramVerifier,
    state: ScramState,
}

enum ScramState {
    /// Waiting for the client-first-message.
    Initial,
    /// server-first-message sent; waiting for the client-final-message.
    ServerFirstSent {
        /// gs2-header of the client-first-message (`n,,` or `y,,`).
        gs2_header: &'static [u8],
        /// client-first-message-bare + "," + server-first-message + ",".
        auth_prefix: Vec<u8>,
        /// Client nonce followed by server nonce.
        nonce: String,
    },
    /// Succeeded or failed; nothing more is accepted.
    Finished,
}

impl fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            ScramState::Initial => "initial",
            ScramState::ServerFirstSent { .. } => "server-first-sent",
            ScramState::Finished => "finished",
        };
        f.debug_struct("ScramServer")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl ScramServer {
    /// Starts an exchange against `verifier` (which is copied).
    pub fn new(verifier: &ScramVerifier) -> Self {
        Self {
            verifier: verifier.clone(),
            state: ScramState::Initial,
        }
    }

    /// Handles the `SASLInitialResponse` (see [`parse_sasl_initial`]) and
    /// returns the server-first-message to send in `AuthenticationSASLContinue`.
    pub fn client_first(&mut self, mechanism: &str, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        let mut raw = [0u8; SERVER_NONCE_LEN];
        rand::rng().fill_bytes(&mut raw);
        self.client_first_with_nonce(mechanism, data, &BASE64.encode(raw))
    }

    fn client_first_with_nonce(
        &mut self,
        mechanism: &str,
        data: &[u8],
        server_nonce: &str,
    ) -> Result<Vec<u8>, AuthError> {
        if !matches!(self.state, ScramState::Initial) {
            self.state = ScramState::Finished;
            return Err(protocol("unexpected SASLInitialResponse"));
        }
        self.state = ScramState::Finished;
        match mechanism {
            SCRAM_SHA_256 => {}
            SCRAM_SHA_256_PLUS => {
                return Err(protocol(
                    "SCRAM-SHA-256-PLUS was not offered: channel binding needs TLS, \
                     which this connection does not use",
                ));
            }
            _ => {
                return Err(protocol(format!(
                    "unsupported SASL mechanism {:?}",
                    mechanism
                )));
            }
        }

        // gs2-header: cbind-flag "," [authzid] ","
        let mut parts = data.splitn(3, |&b| b == b',');
        let flag = parts.next().unwrap_or_default();
        let authzid = parts.next();
        let bare = parts.next();
        let gs2_header: &'static [u8] = match flag {
            b"n" => b"n,,",
            b"y" => b"y,,",
            f if f.starts_with(b"p=") => {
                return Err(protocol(
                    "channel binding is not supported: the connection is not using TLS",
                ));
            }
            _ => {
                return Err(protocol(
                    "malformed SCRAM message: bad channel-binding flag",
                ));
            }
        };
        match authzid {
            Some(b"") => {}
            Some(a) if a.starts_with(b"a=") => {
                return Err(protocol("SCRAM authorization identities are not supported"));
            }
            _ => {
                return Err(protocol(
                    "malformed SCRAM message: expected an empty authorization identity",
                ));
            }
        }
        let bare = bare.ok_or_else(|| protocol("malformed SCRAM message: truncated gs2 header"))?;

        // client-first-message-bare: [reserved-mext ","] username "," nonce ["," extensions]
        let mut attrs = bare.split(|&b| b == b',');
        let user = attrs.next().unwrap_or_default();
        if user.starts_with(b"m=") {
            return Err(protocol(
                "the client requires an unsupported SCRAM extension",
            ));
        }
        if !user.starts_with(b"n=") {
            return Err(protocol(
                "malformed SCRAM message: expected the user name attribute `n=`",
            ));
        }
        // The user name is ignored, as in Postgres: the startup packet's counts.
        let client_nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix(b"r="))
            .ok_or_else(|| {
                protocol("malformed SCRAM message: expected the nonce attribute `r=`")
            })?;
        if client_nonce.is_empty() || !client_nonce.iter().all(|&b| is_printable(b)) {
            return Err(protocol(
                "malformed SCRAM message: the client nonce must be printable ASCII",
            ));
        }
        if !attrs.all(is_attribute) {
            return Err(protocol(
                "malformed SCRAM message: bad extension attribute in client-first-message",
            ));
        }

        let mut nonce = String::with_capacity(client_nonce.len() + server_nonce.len());
        // Printable ASCII, checked above.
        nonce.extend(client_nonce.iter().map(|&b| char::from(b)));
        nonce.push_str(server_nonce);
        let server_first = format!(
            "r={},s={},i={}",
            nonce,
            BASE64.encode(&self.verifier.salt),
            self.verifier.iterations
        )
        .into_bytes();

        let mut auth_prefix = Vec::with_capacity(bare.len() + server_first.len() + 2);
        auth_prefix.extend_from_slice(bare);
        auth_prefix.push(b',');
        auth_prefix.extend_from_slice(&server_first);
        auth_prefix.push(b',');
        self.state = ScramState::ServerFirstSent {
            gs2_header,
            auth_prefix,
            nonce,
        };
        Ok(server_first)
    }

    /// Handles the `SASLResponse` body (the client-final-message) and, if the
    /// client's proof is right, returns the server-final-message (`v=...`) to
    /// send in `AuthenticationSASLFinal`.
    pub fn client_final(&mut self, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        let (gs2_header, auth_prefix, nonce) =
            match std::mem::replace(&mut self.state, ScramState::Finished) {
                ScramState::ServerFirstSent {
                    gs2_header,
                    auth_prefix,
                    nonce,
                } => (gs2_header, auth_prefix, nonce),
                _ => return Err(protocol("unexpected SASLResponse")),
            };

        // client-final-message: "c=" cbind "," "r=" nonce ["," extensions] "," "p=" proof
        let mut attrs = data.split(|&b| b == b',');
        let cbind = attrs
            .next()
            .and_then(|a| a.strip_prefix(b"c="))
            .ok_or_else(|| {
                protocol("malformed SCRAM message: expected the channel-binding attribute `c=`")
            })?;
        let cbind = BASE64.decode(cbind).map_err(|_| {
            protocol("malformed SCRAM message: channel-binding data is not valid base64")
        })?;
        if cbind != gs2_header {
            return Err(protocol(
                "SCRAM channel-binding data does not match the client-first-message",
            ));
        }
        let final_nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix(b"r="))
            .ok_or_else(|| {
                protocol("malformed SCRAM message: expected the nonce attribute `r=`")
            })?;
        if final_nonce != nonce.as_bytes() {
            return Err(protocol("SCRAM nonce mismatch"));
        }
        let mut proof_attr = None;
        for attr in attrs {
            if proof_attr.is_some() {
                return Err(protocol(
                    "malformed SCRAM message: garbage after the proof in client-final-message",
                ));
            }
            if attr.starts_with(b"p=") {
                proof_attr = Some(attr);
            } else if !is_attribute(attr) {
                return Err(protocol(
                    "malformed SCRAM message: bad extension attribute in client-final-message",
                ));
            }
        }
        let proof_attr = proof_attr.ok_or_else(|| {
            protocol("malformed SCRAM message: expected the proof attribute `p=`")
        })?;
        let proof: [u8; KEY_LEN] = BASE64
            .decode(&proof_attr[2..])
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| {
                protocol("malformed SCRAM message: the proof must be 32 bytes of base64")
            })?;

        // AuthMessage = client-first-bare "," server-first "," client-final-without-proof
        // The proof attribute is the last one and follows a comma.
        let without_proof = &data[..data.len() - proof_attr.len() - 1];
        let mut auth_message = auth_prefix;
        auth_message.extend_from_slice(without_proof);

        let client_signature = hmac_sha256(&self.verifier.stored_key, &auth_message)?;
        let mut client_key = proof;
        for (k, s) in client_key.iter_mut().zip(client_signature) {
            *k ^= s;
        }
        let stored_key = Sha256::digest(client_key);
        if CtOutput::<Sha256>::new(stored_key)
            != CtOutput::<Sha256>::new(self.verifier.stored_key.into())
        {
            return Err(AuthError::WrongPassword);
        }

        let server_signature = hmac_sha256(&self.verifier.server_key, &auth_message)?;
        Ok(format!("v={}", BASE64.encode(server_signature)).into_bytes())
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Result<[u8; KEY_LEN], AuthError> {
    let mut mac = HmacSha256::new_from_slice(key)
        .map_err(|_| protocol("internal error: HMAC key rejected"))?;
    mac.update(message);
    Ok(mac.finalize().into_bytes().into())
}

/// RFC 5802 `printable`: `%x21-2B / %x2D-7E` (visible ASCII except `,`).
fn is_printable(b: u8) -> bool {
    matches!(b, 0x21..=0x2b | 0x2d..=0x7e)
}

/// An `attr-val` such as an extension: one ASCII letter, `=`, a value.
fn is_attribute(attr: &[u8]) -> bool {
    matches!(attr, [name, b'=', ..] if name.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::md5_hash;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    /// Runs a full exchange between postgres-protocol's client and our server.
    fn exchange(
        verifier: &ScramVerifier,
        password: &str,
        binding: ChannelBinding,
    ) -> Result<(), AuthError> {
        let mut client = ScramSha256::new(password.as_bytes(), binding);
        let mut server = ScramServer::new(verifier);
        let server_first = server.client_first(SCRAM_SHA_256, client.message())?;
        client
            .update(&server_first)
            .expect("client accepts server-first");
        let server_final = server.client_final(client.message())?;
        client
            .finish(&server_final)
            .expect("client accepts the server signature");
        Ok(())
    }

    fn both_bindings(verifier: &ScramVerifier, password: &str) -> [Result<(), AuthError>; 2] {
        [
            exchange(verifier, password, ChannelBinding::unsupported()),
            exchange(verifier, password, ChannelBinding::unrequested()),
        ]
    }

    #[test]
    fn scram_plain_stored_password() {
        let stored = StoredPassword::parse("pencil").unwrap();
        let verifier = stored.scram_verifier().unwrap();
        assert_eq!(verifier.iterations(), 4096);
        assert_eq!(verifier.salt().len(), 16);
        assert_eq!(both_bindings(verifier, "pencil"), [Ok(()), Ok(())]);
        assert_eq!(
            both_bindings(verifier, "pencil2"),
            [Err(AuthError::WrongPassword), Err(AuthError::WrongPassword)]
        );
        assert_eq!(
            exchange(verifier, "", ChannelBinding::unsupported()),
            Err(AuthError::WrongPassword)
        );
    }

    #[test]
    fn scram_plain_password_is_saslprepped() {
        // U+00A0 (no-break space) is mapped to a space by SASLprep, on both sides.
        let stored = StoredPassword::parse("p\u{e4}ss\u{a0}w\u{f6}rd").unwrap();
        let verifier = stored.scram_verifier().unwrap();
        assert_eq!(
            exchange(
                verifier,
                "p\u{e4}ss\u{a0}w\u{f6}rd",
                ChannelBinding::unsupported()
            ),
            Ok(())
        );
        assert_eq!(
            exchange(
                verifier,
                "p\u{e4}ss w\u{f6}rd",
                ChannelBinding::unsupported()
            ),
            Ok(())
        );
        assert_eq!(
            exchange(verifier, "pass word", ChannelBinding::unsupported()),
            Err(AuthError::WrongPassword)
        );
    }

    #[test]
    fn scram_postgres_protocol_verifier() {
        let text = postgres_protocol::password::scram_sha_256(b"pencil");
        let stored = StoredPassword::parse(&text).unwrap();
        assert!(stored.supports_scram());
        assert!(!stored.supports_md5());
        let verifier = stored.scram_verifier().unwrap();
        assert_eq!(both_bindings(verifier, "pencil"), [Ok(()), Ok(())]);
        assert_eq!(
            both_bindings(verifier, "Pencil"),
            [Err(AuthError::WrongPassword), Err(AuthError::WrongPassword)]
        );
    }

    /// `rolpassword` of a role with password `pencil`, with the salt and
    /// iteration count of RFC 7677's example.
    const RFC7677_VERIFIER: &str = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$\
        WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

    #[test]
    fn fixed_verifier_parses_and_authenticates() {
        let verifier = ScramVerifier::parse(RFC7677_VERIFIER).unwrap();
        assert_eq!(verifier.iterations(), 4096);
        assert_eq!(
            verifier.salt(),
            BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap()
        );
        assert_eq!(
            StoredPassword::parse(RFC7677_VERIFIER)
                .unwrap()
                .scram_verifier(),
            Some(&verifier)
        );
        assert_eq!(both_bindings(&verifier, "pencil"), [Ok(()), Ok(())]);
        assert_eq!(
            exchange(&verifier, "pencil ", ChannelBinding::unsupported()),
            Err(AuthError::WrongPassword)
        );
    }

    /// The exact exchange from RFC 7677 section 3 (the client user name is ignored).
    #[test]
    fn rfc7677_test_vector() {
        let verifier = ScramVerifier::parse(RFC7677_VERIFIER).unwrap();
        let mut server = ScramServer::new(&verifier);
        let server_first = server
            .client_first_with_nonce(
                SCRAM_SHA_256,
                b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            )
            .unwrap();
        assert_eq!(
            server_first,
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
              s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let server_final = server
            .client_final(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .unwrap();
        assert_eq!(
            server_final,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        // The exchange is over.
        assert!(matches!(
            server.client_final(b"c=biws"),
            Err(AuthError::Protocol(_))
        ));
    }

    #[test]
    fn server_nonce_is_random_and_long() {
        let verifier = ScramVerifier::parse(RFC7677_VERIFIER).unwrap();
        let nonce = |_| {
            let first = ScramServer::new(&verifier)
                .client_first(SCRAM_SHA_256, b"n,,n=,r=abc")
                .unwrap();
            let first = String::from_utf8(first).unwrap();
            let r = first
                .split(',')
                .next()
                .unwrap()
                .strip_prefix("r=abc")
                .unwrap();
            assert_eq!(BASE64.decode(r).unwrap().len(), SERVER_NONCE_LEN);
            r.to_owned()
        };
        assert_ne!(nonce(0), nonce(1));
    }

    #[test]
    fn mock_verifier_never_authenticates() {
        let secret = b"per-process secret";
        let a = ScramVerifier::mock("alice", secret);
        assert_eq!(a.salt(), ScramVerifier::mock("alice", secret).salt());
        assert_ne!(a.salt(), ScramVerifier::mock("bob", secret).salt());
        assert_eq!(a.salt().len(), 16);
        assert_eq!(
            both_bindings(&a, "anything"),
            [Err(AuthError::WrongPassword), Err(AuthError::WrongPassword)]
        );
    }

    #[test]
    fn md5_plain_and_hashed() {
        let salt = [0x2a, 0x3d, 0x8f, 0xe0];
        let plain = StoredPassword::parse("pencil").unwrap();
        let hashed =
            StoredPassword::parse(&postgres_protocol::password::md5(b"pencil", "alice")).unwrap();
        assert!(hashed.supports_md5());
        assert!(!hashed.supports_scram());
        assert!(hashed.scram_verifier().is_none());
        assert!(plain.supports_md5() && plain.supports_scram());

        for stored in [&plain, &hashed] {
            let good = md5_hash(b"alice", b"pencil", salt);
            assert_eq!(md5_verify("alice", stored, salt, good.as_bytes()), Ok(()));
            // With the PasswordMessage's NUL terminator.
            let with_nul = format!("{good}\0");
            assert_eq!(
                md5_verify("alice", stored, salt, with_nul.as_bytes()),
                Ok(())
            );

            let wrong = [
                md5_hash(b"alice", b"pencil2", salt),
                md5_hash(b"bob", b"pencil", salt),
                md5_hash(b"alice", b"pencil", [0, 0, 0, 0]),
                good.to_uppercase(),
                good[3..].to_owned(),
                format!("{good}0"),
                "md5".to_owned(),
                String::new(),
                "md5zz".repeat(7),
            ];
            for response in wrong {
                assert_eq!(
                    md5_verify("alice", stored, salt, response.as_bytes()),
                    Err(AuthError::WrongPassword),
                    "{response:?}"
                );
            }
        }
    }

    #[test]
    fn md5_with_scram_verifier_is_refused() {
        let stored = StoredPassword::parse(RFC7677_VERIFIER).unwrap();
        let salt = md5_salt();
        let response = md5_hash(b"alice", b"pencil", salt);
        assert_eq!(
            md5_verify("alice", &stored, salt, response.as_bytes()),
            Err(AuthError::Md5Unsupported)
        );
    }

    #[test]
    fn stored_password_kinds() {
        assert_eq!(StoredPassword::parse(""), Err(AuthConfigError::Empty));
        // Not quite md5 hashes: plain text.
        for plain in [
            "md5",
            "md5secret",
            &format!("md5{}", "a".repeat(31)),
            "scram",
        ] {
            let stored = StoredPassword::parse(plain).unwrap();
            assert!(stored.supports_md5() && stored.supports_scram(), "{plain}");
        }
        assert_eq!(
            StoredPassword::parse(&format!("md5{}", "A".repeat(32))),
            Err(AuthConfigError::MalformedMd5)
        );
        // Debug output does not leak secrets.
        let debug = format!("{:?}", StoredPassword::parse("hunter2").unwrap());
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn malformed_verifiers_are_errors() {
        let key = "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=";
        let bad = [
            "SCRAM-SHA-256$".to_owned(),
            "SCRAM-SHA-256$4096".to_owned(),
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==".to_owned(),
            format!("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==${key}"),
            format!("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==${key}:"),
            format!("SCRAM-SHA-256$:W22ZaJ0SNY7soEsUEjb6gQ==${key}:{key}"),
            format!("SCRAM-SHA-256$0:W22ZaJ0SNY7soEsUEjb6gQ==${key}:{key}"),
            format!("SCRAM-SHA-256$-1:W22ZaJ0SNY7soEsUEjb6gQ==${key}:{key}"),
            format!("SCRAM-SHA-256$many:W22ZaJ0SNY7soEsUEjb6gQ==${key}:{key}"),
            format!("SCRAM-SHA-256$4096:${key}:{key}"),
            format!("SCRAM-SHA-256$4096:not*base64${key}:{key}"),
            format!("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$not*base64:{key}"),
            format!("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==${key}:c2hvcnQ="),
            format!("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==${key}:{key}:{key}"),
            format!("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==${key}:{key}$"),
        ];
        for s in bad {
            assert!(
                matches!(
                    StoredPassword::parse(&s),
                    Err(AuthConfigError::MalformedScram(_))
                ),
                "{s}"
            );
            assert!(ScramVerifier::parse(&s).is_err(), "{s}");
        }
        assert!(ScramVerifier::parse("pencil").is_err());
    }

    fn first_err(mechanism: &str, data: &[u8]) -> AuthError {
        let verifier = ScramVerifier::parse(RFC7677_VERIFIER).unwrap();
        let mut server = ScramServer::new(&verifier);
        let err = server.client_first(mechanism, data).unwrap_err();
        // A failed exchange stays failed.
        assert!(server.client_first(SCRAM_SHA_256, b"n,,n=,r=abc").is_err());
        err
    }

    #[test]
    fn malformed_client_first_is_an_error() {
        let cases: &[(&str, &[u8])] = &[
            ("SCRAM-SHA-1", b"n,,n=,r=abc"),
            ("SCRAM-SHA-256-PLUS", b"p=tls-server-end-point,,n=,r=abc"),
            (SCRAM_SHA_256, b"p=tls-server-end-point,,n=,r=abc"),
            (SCRAM_SHA_256, b""),
            (SCRAM_SHA_256, b"n"),
            (SCRAM_SHA_256, b"n,"),
            (SCRAM_SHA_256, b"n,,"),
            (SCRAM_SHA_256, b"x,,n=,r=abc"),
            (SCRAM_SHA_256, b"n,a=admin,n=,r=abc"),
            (SCRAM_SHA_256, b"n,junk,n=,r=abc"),
            (SCRAM_SHA_256, b"n,,m=ext,n=,r=abc"),
            (SCRAM_SHA_256, b"n,,r=abc"),
            (SCRAM_SHA_256, b"n,,n="),
            (SCRAM_SHA_256, b"n,,n=,r="),
            (SCRAM_SHA_256, b"n,,n=,x=abc"),
            (SCRAM_SHA_256, b"n,,n=,r=ab\x01c"),
            (SCRAM_SHA_256, b"n,,n=,r=ab\xffc"),
            (SCRAM_SHA_256, b"n,,n=,r=abc,"),
            (SCRAM_SHA_256, b"n,,n=,r=abc,junk"),
        ];
        for &(mechanism, data) in cases {
            assert!(
                matches!(first_err(mechanism, data), AuthError::Protocol(_)),
                "{mechanism} {:?}",
                String::from_utf8_lossy(data)
            );
        }
        let AuthError::Protocol(msg) = first_err(SCRAM_SHA_256, b"p=tls-unique,,n=,r=abc") else {
            panic!("expected a protocol error");
        };
        assert!(msg.contains("channel binding"), "{msg}");
    }

    #[test]
    fn client_first_ignores_user_name_and_extensions() {
        let verifier = ScramVerifier::parse(RFC7677_VERIFIER).unwrap();
        for data in [&b"n,,n=someone=2Celse,r=abc"[..], b"y,,n=,r=abc,x=ext"] {
            assert!(
                ScramServer::new(&verifier)
                    .client_first(SCRAM_SHA_256, data)
                    .is_ok()
            );
        }
    }

    /// A server that has answered `n,,n=user,r=abc` with server nonce `XYZ`.
    fn after_first(flag: &str) -> ScramServer {
        let verifier = ScramVerifier::parse(RFC7677_VERIFIER).unwrap();
        let mut server = ScramServer::new(&verifier);
        server
            .client_first_with_nonce(
                SCRAM_SHA_256,
                format!("{flag},,n=user,r=abc").as_bytes(),
                "XYZ",
            )
            .unwrap();
        server
    }

    #[test]
    fn malformed_client_final_is_an_error() {
        let proof = "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let cases = [
            String::new(),
            "c=biws".to_owned(),
            "c=biws,r=abcXYZ".to_owned(),
            format!("r=abcXYZ,{proof}"),
            format!("c=biws,{proof}"),
            format!("c=*bad*,r=abcXYZ,{proof}"),
            format!("c=eSws,r=abcXYZ,{proof}"),
            format!("c=cD10bHMtdW5pcXVlLCw=,r=abcXYZ,{proof}"),
            format!("c=biws,r=abc,{proof}"),
            format!("c=biws,r=XYZ,{proof}"),
            format!("c=biws,r=abcXY,{proof}"),
            format!("c=biws,r=abcXYZW,{proof}"),
            format!("c=biws,r=zbcXYZ,{proof}"),
            format!("c=biws,r=abcXYZ,{proof},x=late"),
            format!("c=biws,r=abcXYZ,{proof},"),
            format!("c=biws,r=abcXYZ,junk,{proof}"),
            "c=biws,r=abcXYZ,p=".to_owned(),
            "c=biws,r=abcXYZ,p=*bad*".to_owned(),
            "c=biws,r=abcXYZ,p=c2hvcnQ=".to_owned(),
        ];
        for data in &cases {
            let mut server = after_first("n");
            assert!(
                matches!(
                    server.client_final(data.as_bytes()),
                    Err(AuthError::Protocol(_))
                ),
                "{data}"
            );
            // A failed exchange stays failed.
            assert!(server.client_final(data.as_bytes()).is_err());
        }
        // The flag in c= must match the client-first-message's.
        let mut server = after_first("y");
        assert!(matches!(
            server.client_final(format!("c=biws,r=abcXYZ,{proof}").as_bytes()),
            Err(AuthError::Protocol(_))
        ));
        // Well-formed with the right nonce but a wrong proof.
        for flag in ["n", "y"] {
            let cbind = BASE64.encode(format!("{flag},,"));
            let mut server = after_first(flag);
            assert_eq!(
                server.client_final(format!("c={cbind},r=abcXYZ,x=ext,{proof}").as_bytes()),
                Err(AuthError::WrongPassword)
            );
        }
        // client-final before client-first.
        let verifier = ScramVerifier::parse(RFC7677_VERIFIER).unwrap();
        assert!(matches!(
            ScramServer::new(&verifier).client_final(format!("c=biws,r=abcXYZ,{proof}").as_bytes()),
            Err(AuthError::Protocol(_))
        ));
    }

    #[test]
    fn truncated_and_garbled_messages_never_panic() {
        let verifier = ScramVerifier::parse(RFC7677_VERIFIER).unwrap();
        let first = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
        let last = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                     p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        for cut in 0..first.len() {
            let _ = ScramServer::new(&verifier).client_first(SCRAM_SHA_256, &first[..cut]);
        }
        for cut in 0..last.len() {
            let mut server = ScramServer::new(&verifier);
            server
                .client_first_with_nonce(SCRAM_SHA_256, first, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
                .unwrap();
            assert!(server.client_final(&last[..cut]).is_err());
        }
        for byte in [b',', b'=', b'\0', 0xff] {
            for i in 0..last.len() {
                let mut garbled = last.to_vec();
                garbled[i] = byte;
                let mut server = ScramServer::new(&verifier);
                server
                    .client_first_with_nonce(SCRAM_SHA_256, first, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
                    .unwrap();
                let _ = server.client_final(&garbled);
                let _ = parse_sasl_initial(&garbled);
            }
        }
    }

    fn sasl_initial(mechanism: &str, len: i32, data: &[u8]) -> Vec<u8> {
        let mut body = mechanism.as_bytes().to_vec();
        body.push(0);
        body.extend_from_slice(&len.to_be_bytes());
        body.extend_from_slice(data);
        body
    }

    #[test]
    fn sasl_initial_response_parsing() {
        let body = sasl_initial(SCRAM_SHA_256, 11, b"n,,n=,r=abc");
        assert_eq!(
            parse_sasl_initial(&body),
            Ok((SCRAM_SHA_256, Some(&b"n,,n=,r=abc"[..])))
        );
        let body = sasl_initial(SCRAM_SHA_256, -1, b"");
        assert_eq!(parse_sasl_initial(&body), Ok((SCRAM_SHA_256, None)));
        let body = sasl_initial(SCRAM_SHA_256, 0, b"");
        assert_eq!(
            parse_sasl_initial(&body),
            Ok((SCRAM_SHA_256, Some(&b""[..])))
        );

        let bad = [
            Vec::new(),
            b"SCRAM-SHA-256".to_vec(),
            b"SCRAM-SHA-256\0".to_vec(),
            b"SCRAM-SHA-256\0\0\0".to_vec(),
            sasl_initial(SCRAM_SHA_256, 12, b"n,,n=,r=abc"),
            sasl_initial(SCRAM_SHA_256, 10, b"n,,n=,r=abc"),
            sasl_initial(SCRAM_SHA_256, -1, b"n,,n=,r=abc"),
            sasl_initial(SCRAM_SHA_256, -2, b""),
            sasl_initial(SCRAM_SHA_256, i32::MIN, b""),
            sasl_initial("SCRAM\u{fffd}", 0, b"")
                .iter()
                .map(|&b| if b == 0xef { 0xff } else { b })
                .collect(),
        ];
        for body in &bad {
            assert!(
                matches!(parse_sasl_initial(body), Err(AuthError::Protocol(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn md5_salt_is_random() {
        let salts: Vec<_> = (0..4).map(|_| md5_salt()).collect();
        assert!(salts.windows(2).any(|w| w[0] != w[1]));
    }
}
