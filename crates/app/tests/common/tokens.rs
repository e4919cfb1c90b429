//! Tokens and logs for the tests that keep secrets: tokens minted with the
//! test server's own ES256 key (`SPACELINK_SERVER_DIR/keys/priv.pem`) for an
//! identity the server issued, a provider that mints one each time it is
//! asked, and every log line of the test binary captured at trace level, to
//! be searched for them.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::DecodePrivateKey as _;
use spacelink::auth::{TokenFuture, TokenRequest};
use spacelink::TokenProvider;
use spacelink_auth::Token;

// ---- Every log line of the test binary, at trace level (`log` records too). ----

static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once) a subscriber at trace level writing every line, with its
/// spans and all their fields, and every span's opening and closing, into a
/// buffer that [`logs`] reads.
pub fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
            .with_writer(|| Capture)
            .try_init()
            .unwrap();
    });
}

/// Every log line captured so far.
pub fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

/// What must never appear of `token`: the whole, each of its parts (split on
/// `.`: a JWT's header, payload and signature), and its signature's first 16 characters.
pub fn secret_pieces(token: &Token) -> Vec<String> {
    let whole = token.expose();
    let mut pieces = vec![whole.to_string()];
    pieces.extend(whole.split('.').filter(|p| !p.is_empty()).map(str::to_string));
    if let Some(signature) = whole.rsplit('.').next() {
        pieces.push(signature.chars().take(16).collect());
    }
    pieces
}

/// No log line so far holds any of `tokens` (nor their signature part alone).
pub fn assert_not_logged(tokens: &[&Token]) {
    let logs = logs();
    assert!(logs.lines().count() > 20, "the capture works: {} lines", logs.lines().count());
    for token in tokens {
        let signature = token.expose().rsplit('.').next().unwrap();
        assert!(!logs.contains(signature), "a token appears in the logs");
    }
}

// ---- Tokens signed with the test server's own key. ----

/// Mints tokens like the server's own for the identity of a real server token.
#[derive(Debug)]
pub struct Minter {
    key: p256::ecdsa::SigningKey,
    claims: serde_json::Map<String, serde_json::Value>,
}

impl Minter {
    /// Asks the server for an identity (`POST /v1/identity`) and copies its claims' shape.
    pub fn new() -> (Self, Token) {
        let dir =
            PathBuf::from(std::env::var("SPACELINK_SERVER_DIR").expect("SPACELINK_SERVER_DIR: the server's state dir"));
        let pem = std::fs::read_to_string(dir.join("keys/priv.pem")).unwrap();
        let key = p256::ecdsa::SigningKey::from_pkcs8_pem(&pem).unwrap();
        let (url, _) = super::server();
        let body = ureq::post(&format!("{url}/v1/identity")).call().unwrap().into_string().unwrap();
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        let token = Token::new(body["token"].as_str().unwrap());
        let payload = token.expose().split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(claims["exp"].is_null(), "a server-issued token never expires: {claims}");
        (Self { key, claims: claims.as_object().unwrap().clone() }, token)
    }

    /// A token for the same identity issued now, expiring at `exp` (seconds since the epoch).
    pub fn mint(&self, exp: u64) -> Token {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims = self.claims.clone();
        claims.insert("iat".into(), now_secs().saturating_sub(1).into());
        claims.insert("exp".into(), exp.into());
        let signing_input = format!(
            "{}.{}",
            e.encode(br#"{"typ":"JWT","alg":"ES256"}"#),
            e.encode(serde_json::Value::from(claims).to_string())
        );
        let signature: p256::ecdsa::Signature = self.key.sign(signing_input.as_bytes());
        Token::new(format!("{signing_input}.{}", e.encode(signature.to_bytes())))
    }
}

/// Seconds since the epoch, now.
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A provider that mints a token living `life` seconds each time it is asked.
#[derive(Debug)]
pub struct MintingProvider {
    pub minter: Arc<Minter>,
    pub life: u64,
    pub asked: AtomicUsize,
    pub minted: Mutex<Vec<Token>>,
}

impl MintingProvider {
    /// A provider minting with `minter` tokens that live `life` seconds.
    pub fn new(minter: Arc<Minter>, life: u64) -> Self {
        Self { minter, life, asked: 0.into(), minted: Mutex::default() }
    }
}

impl TokenProvider for MintingProvider {
    fn new_token(&self, _request: TokenRequest) -> TokenFuture {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let token = self.minter.mint(now_secs() + self.life);
        self.minted.lock().unwrap().push(token.clone());
        Box::pin(async move { Ok(token) })
    }
}
