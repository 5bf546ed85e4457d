//! A small async Redis client for vecwal's own requests (COMMAND INFO, INFO, REPLICAOF,
//! replay): one connection, commands pipelined or one at a time. Application traffic never
//! goes through it; the proxy forwards that as bytes.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol::resp::encode_command;
use crate::protocol::resp_value::{decode, Value};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to Redis at {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connection to Redis lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("Redis refused {command}: {reply}")]
    Refused { command: String, reply: String },
    #[error("unexpected reply from Redis: {0}")]
    Protocol(String),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// Where a Redis server is and how to log in: parsed from `redis://[user:password@]host:port[/db]`.
/// The password is kept out of `Debug` output (promise 9).
#[derive(Clone, Default)]
pub struct RedisTarget {
    pub addr: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u32,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
            .field("addr", &self.addr)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("db", &self.db)
            .finish()
    }
}

impl RedisTarget {
    /// Parses `redis://[[user]:password@]host[:port][/db]` (or a bare `host:port`). Errors
    /// never repeat the URL, which may hold a password.
    pub fn parse(url: &str) -> Result<RedisTarget, String> {
        let rest = url.strip_prefix("redis://").unwrap_or(url);
        if rest.contains("://") {
            return Err("only redis:// URLs are supported (no TLS yet)".into());
        }
        let (auth, hostpart) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let (hostport, db) = match hostpart.split_once('/') {
            Some((h, "")) => (h, 0),
            Some((h, d)) => (
                h,
                d.parse()
                    .map_err(|_| "the database after '/' must be a number".to_string())?,
            ),
            None => (hostpart, 0),
        };
        if hostport.is_empty() {
            return Err("no host in the Redis URL".into());
        }
        let addr = if hostport
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            hostport.to_string()
        } else {
            format!("{hostport}:6379")
        };
        let (username, password) = match auth {
            None => (None, None),
            Some(a) => match a.split_once(':') {
                Some(("", p)) => (None, Some(p.to_string())),
                Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
                None => (None, Some(a.to_string())),
            },
        };
        Ok(RedisTarget {
            addr,
            username,
            password,
            db,
        })
    }

    /// Connects, logs in and selects the database.
    pub async fn connect(&self) -> Result<RedisClient, ClientError> {
        let stream =
            TcpStream::connect(&self.addr)
                .await
                .map_err(|source| ClientError::Connect {
                    addr: self.addr.clone(),
                    source,
                })?;
        stream.set_nodelay(true)?;
        let mut c = RedisClient {
            stream,
            buf: Vec::with_capacity(16 << 10),
            timeout: Duration::from_secs(60),
        };
        if let Some(pw) = &self.password {
            let mut argv = vec![b"AUTH".to_vec()];
            if let Some(u) = &self.username {
                argv.push(u.as_bytes().to_vec());
            }
            argv.push(pw.as_bytes().to_vec());
            // The reply to a failed AUTH names no secret; the command is reported as "AUTH".
            c.send(&argv).await?;
            let r = c.read().await?;
            if let Value::Error(e) = r {
                return Err(ClientError::Refused {
                    command: "AUTH".into(),
                    reply: String::from_utf8_lossy(&e).into_owned(),
                });
            }
        }
        if self.db != 0 {
            c.ok(&["SELECT", &self.db.to_string()]).await?;
        }
        Ok(c)
    }
}

pub struct RedisClient {
    stream: TcpStream,
    buf: Vec<u8>,
    timeout: Duration,
}

impl RedisClient {
    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }

    /// Writes one command without waiting for its reply.
    pub async fn send(&mut self, argv: &[Vec<u8>]) -> Result<(), ClientError> {
        self.stream.write_all(&encode_command(argv)).await?;
        Ok(())
    }

    /// Writes pre-encoded commands.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Reads the next reply.
    pub async fn read(&mut self) -> Result<Value, ClientError> {
        let t = self.timeout;
        tokio::time::timeout(t, self.read_inner())
            .await
            .map_err(|_| ClientError::Timeout(t))?
    }

    async fn read_inner(&mut self) -> Result<Value, ClientError> {
        loop {
            if let Some((v, n)) =
                decode(&self.buf).map_err(|e| ClientError::Protocol(e.to_string()))?
            {
                self.buf.drain(..n);
                return Ok(v);
            }
            self.buf.reserve(64 << 10);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Sends a command and returns its reply, errors included.
    pub async fn call(&mut self, argv: &[Vec<u8>]) -> Result<Value, ClientError> {
        self.send(argv).await?;
        self.read().await
    }

    /// Sends a command given as words; an error reply is `Refused`.
    pub async fn ok(&mut self, words: &[&str]) -> Result<Value, ClientError> {
        let argv: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        match self.call(&argv).await? {
            Value::Error(e) => Err(ClientError::Refused {
                command: words.first().copied().unwrap_or_default().to_string(),
                reply: String::from_utf8_lossy(&e).into_owned(),
            }),
            v => Ok(v),
        }
    }

    /// `INFO section` as key/value pairs.
    pub async fn info(&mut self, section: &str) -> Result<Vec<(String, String)>, ClientError> {
        let v = self.ok(&["INFO", section]).await?;
        let text = v.text();
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect())
    }

    /// Databases that hold keys, with their key counts.
    pub async fn keyspace(&mut self) -> Result<Vec<(u32, u64)>, ClientError> {
        Ok(self
            .info("keyspace")
            .await?
            .into_iter()
            .filter_map(|(k, v)| {
                let db = k.strip_prefix("db")?.parse().ok()?;
                let keys = v.split(',').next()?.strip_prefix("keys=")?.parse().ok()?;
                Some((db, keys))
            })
            .collect())
    }

    /// The connection itself, for a caller that pipelines on its own (the proxy's offset
    /// probe). Bytes already read and not yet consumed are dropped: call this only between
    /// whole replies.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.stream.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::RedisTarget;

    #[test]
    fn urls_parse_and_hide_the_password() {
        let t = RedisTarget::parse("redis://app:s3cret@10.0.0.5:6380/2").unwrap();
        assert_eq!(t.addr, "10.0.0.5:6380");
        assert_eq!(t.username.as_deref(), Some("app"));
        assert_eq!(t.password.as_deref(), Some("s3cret"));
        assert_eq!(t.db, 2);
        assert!(!format!("{t:?}").contains("s3cret"));
        let t = RedisTarget::parse("redis://:pw@host").unwrap();
        assert_eq!((t.addr.as_str(), t.username, t.db), ("host:6379", None, 0));
        assert_eq!(
            RedisTarget::parse("127.0.0.1:7000").unwrap().addr,
            "127.0.0.1:7000"
        );
        let e = RedisTarget::parse("rediss://u:hunter2@h").unwrap_err();
        assert!(!e.contains("hunter2"));
        assert!(RedisTarget::parse("redis://h/x").is_err());
    }
}
