//! The panic boundary and error reporting shared by every export.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use agentmem_backend::{Error, ErrorKind};

use crate::agentmem_result;

/// A failed call: its code and the message for `agentmem_last_error_message`.
#[derive(Debug)]
pub(crate) struct Fail {
    pub code: agentmem_result,
    pub message: String,
}

impl Fail {
    pub(crate) fn new(code: agentmem_result, message: impl Into<String>) -> Fail {
        Fail {
            code,
            message: message.into(),
        }
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        // Store errors are transparent: their text is already the message.
        if matches!(e, Error::Store(_)) {
            source = source.and_then(std::error::Error::source);
        }
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Fail::new(agentmem_result::from(e.kind()), message)
    }
}

impl From<ErrorKind> for agentmem_result {
    fn from(k: ErrorKind) -> agentmem_result {
        use agentmem_result::*;
        match k {
            ErrorKind::InvalidArgument => AGENTMEM_INVALID_ARGUMENT,
            ErrorKind::TooLarge => AGENTMEM_TOO_LARGE,
            ErrorKind::UnknownAgent => AGENTMEM_UNKNOWN_AGENT,
            ErrorKind::UnknownUnit => AGENTMEM_UNKNOWN_UNIT,
            ErrorKind::NotOwner => AGENTMEM_NOT_OWNER,
            ErrorKind::AccessDenied => AGENTMEM_ACCESS_DENIED,
            ErrorKind::UnknownConversation => AGENTMEM_UNKNOWN_CONVERSATION,
            ErrorKind::OutOfRange => AGENTMEM_OUT_OF_RANGE,
            ErrorKind::Corrupt => AGENTMEM_CORRUPT,
            ErrorKind::Closed => AGENTMEM_CLOSED,
            ErrorKind::NotRunning => AGENTMEM_NOT_RUNNING,
            ErrorKind::Io => AGENTMEM_IO,
            ErrorKind::Protocol => AGENTMEM_PROTOCOL,
            ErrorKind::NoSpace => AGENTMEM_NO_SPACE,
            ErrorKind::LimitReached => AGENTMEM_LIMIT_REACHED,
            _ => AGENTMEM_INTERNAL,
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // A message with an interior NUL (from caller-provided text) is cut there.
    let bytes = message.as_bytes();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let c = CString::new(&bytes[..end]).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = c);
}

/// Pointer to this thread's last error message (empty if none).
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|l| l.borrow().as_ptr())
}

/// Run an export's body: a panic becomes `AGENTMEM_PANIC`, an error sets
/// the thread's last error message. Unwinding into C is undefined
/// behaviour, so nothing may escape this.
pub(crate) fn ffi(f: impl FnOnce() -> Result<(), Fail>) -> agentmem_result {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => agentmem_result::AGENTMEM_OK,
        Ok(Err(fail)) => {
            set_last_error(&fail.message);
            fail.code
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!(
                "internal error (a bug in libagentmem, please report it): {what}"
            ));
            agentmem_result::AGENTMEM_PANIC
        }
    }
}

/// Borrow a C string argument.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn c_str<'a>(p: *const c_char, what: &str) -> Result<&'a str, Fail> {
    if p.is_null() {
        return Err(Fail::new(
            agentmem_result::AGENTMEM_NULL_POINTER,
            format!("{what} is NULL: pass a NUL-terminated UTF-8 string"),
        ));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|e| {
        Fail::new(
            agentmem_result::AGENTMEM_INVALID_ARGUMENT,
            format!("{what} is not UTF-8 ({e})"),
        )
    })
}

/// Borrow a byte buffer argument.
///
/// # Safety
/// `p` is NULL or points to `len` readable bytes that outlive `'a`.
pub(crate) unsafe fn c_bytes<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a [u8], Fail> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Fail::new(
            agentmem_result::AGENTMEM_NULL_POINTER,
            format!("{what} is NULL but its size is {len}"),
        ));
    }
    // No object is larger than isize::MAX bytes (a slice that long is
    // undefined behaviour): such a size is a caller's mistake, answered
    // before anything is read or allocated.
    if len > isize::MAX as usize {
        return Err(Fail::new(
            agentmem_result::AGENTMEM_TOO_LARGE,
            format!("{what} of {len} bytes is larger than any object can be"),
        ));
    }
    // SAFETY: non-NULL and `len` readable bytes by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Borrow an output argument.
///
/// # Safety
/// `p` is NULL or points to a writable, aligned `T`.
pub(crate) unsafe fn c_out<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T, Fail> {
    // SAFETY: NULL is checked by `as_mut`; otherwise valid by contract.
    unsafe { p.as_mut() }.ok_or_else(|| {
        Fail::new(
            agentmem_result::AGENTMEM_NULL_POINTER,
            format!("{what} is NULL: pass where to store the result"),
        )
    })
}
