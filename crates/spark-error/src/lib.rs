//! How Spark shows an error to a person: what failed, then each cause, `: `-separated, the
//! same text anyhow's `{:#}` gives in the `spark` binary.
//!
//! The convention every crate keeps (see ARCHITECTURE.md, "Errors"): an error's `Display`
//! says what failed, in its caller's terms, and its `source()` is the cause, as an error
//! rather than its text; never both, so a chain printed whole names each cause exactly once
//! ("cannot read manifest spark.toml: No such file or directory (os error 2)", not the
//! cause twice). Whoever shows an error to a person prints the whole chain: the CLI with
//! anyhow's `{:#}`, library code (a log line, an admin API answer, a message to a guest)
//! with [`chain`]. Printing only `{}` shows what failed without why.
//!
//! Not every library keeps the rule: some (`async-nats`, for one) print their cause in their
//! own message *and* return it from `source()`. [`chain`] leaves out a cause whose text its
//! effect's message already ends with, so those are not doubled either; the CLI prints its
//! errors through [`chain`] too, for the same reason.
//!
//! The decision worth knowing: this is a crate of its own, with no dependencies, because the
//! crates that show errors (the node, the store, the inference host, the probes, the CLI)
//! share no other crate below them, and the rule is worth one definition rather than one per
//! crate.

use std::error::Error;
use std::fmt;

/// A cause of any type, kept as an error (with its own causes), for errors whose causes come
/// in several types or in a type that is not itself a `std::error::Error` (a
/// `wasmtime::Error` converts into one, keeping its chain).
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// A step that failed, in words, with the error that made it fail: the middle link of a chain
/// where no variant of a typed error fits ("run: <ONNX Runtime's message>", "GET /v1/status:
/// <hyper's error>"). Its `source()` is the cause.
#[derive(Debug)]
pub struct Context {
    what: String,
    source: BoxError,
}

/// `what` failed because of `cause` (see [`Context`]).
pub fn context(what: impl Into<String>, cause: impl Into<BoxError>) -> Context {
    Context {
        what: what.into(),
        source: cause.into(),
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl Error for Context {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// Displays `error` and each of its causes: `what failed: cause: cause of the cause`; a cause
/// whose text ends the message before it (a library that prints its cause itself) is not
/// repeated.
pub fn chain<'a>(error: &'a (dyn Error + 'a)) -> Chain<'a> {
    Chain(error)
}

/// The display of an error with its causes; see [`chain`].
#[derive(Clone, Copy)]
pub struct Chain<'a>(&'a (dyn Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            let text = error.to_string();
            if !shown.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            shown = text;
            cause = error.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read manifest spark.toml")]
    struct Read {
        #[source]
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("starting the node")]
    struct Start {
        #[source]
        source: Read,
    }

    #[test]
    fn each_cause_once_in_order() {
        let error = Start {
            source: Read {
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            },
        };
        assert_eq!(
            chain(&error).to_string(),
            "starting the node: cannot read manifest spark.toml: no such file"
        );
        assert_eq!(chain(&error.source.source).to_string(), "no such file");
    }

    /// Prints its cause in its own message and returns it as its source, as `async-nats`'s
    /// errors do.
    #[derive(Debug)]
    struct SaysItTwice(std::io::Error);

    impl fmt::Display for SaysItTwice {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "timed out: {}", self.0)
        }
    }

    impl Error for SaysItTwice {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        #[derive(Debug, thiserror::Error)]
        #[error("writing desired state")]
        struct Write {
            #[source]
            source: SaysItTwice,
        }
        let error = Write {
            source: SaysItTwice(std::io::Error::other("connection reset")),
        };
        assert_eq!(
            chain(&error).to_string(),
            "writing desired state: timed out: connection reset"
        );
    }

    #[test]
    fn a_context_is_a_link_of_the_chain() {
        let error = context("GET /v1/status", std::io::Error::other("connection reset"));
        assert_eq!(error.to_string(), "GET /v1/status");
        assert_eq!(
            chain(&error).to_string(),
            "GET /v1/status: connection reset"
        );
        assert!(error.source().unwrap().is::<std::io::Error>());
    }

    #[test]
    fn a_boxed_cause_keeps_its_own_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer {
            #[source]
            source: BoxError,
        }
        let inner: BoxError = Box::new(Read {
            source: std::io::Error::other("disk"),
        });
        let error = Outer { source: inner };
        assert_eq!(
            chain(&error).to_string(),
            "outer: cannot read manifest spark.toml: disk"
        );
    }
}
