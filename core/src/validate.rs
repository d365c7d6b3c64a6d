//! Checks of caller-supplied names and tags: anything stored must be safe to print and to
//! use as a relative file name on restore.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

fn invalid(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

/// An item name: 1–1024 bytes, no NUL or control characters, a relative path whose components
/// are neither empty, `.` nor `..`, and no backslash.
pub fn validate_item_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 1024 {
        return Err(invalid(format!(
            "item name must be 1 to 1024 bytes long, got {}",
            name.len()
        )));
    }
    if name.chars().any(|c| c.is_control()) || name.contains('\\') {
        return Err(invalid(format!(
            "item name {name:?} contains a control character or a backslash"
        )));
    }
    if name
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(invalid(format!(
            "item name {name:?} must be a relative path without empty, '.' or '..' parts"
        )));
    }
    Ok(())
}

/// An item type: 1–128 bytes, no control characters.
pub fn validate_item_type(kind: &str) -> Result<()> {
    if kind.is_empty() || kind.len() > 128 || kind.chars().any(|c| c.is_control()) {
        return Err(invalid(format!(
            "item type {kind:?} must be 1 to 128 printable bytes"
        )));
    }
    Ok(())
}

/// Tags: keys 1–256 bytes, values up to 4096 bytes, no control characters, at most 256 tags.
pub fn validate_tags(tags: &BTreeMap<String, String>) -> Result<()> {
    if tags.len() > 256 {
        return Err(invalid(format!(
            "{} tags given, at most 256 allowed",
            tags.len()
        )));
    }
    for (k, v) in tags {
        if k.is_empty() || k.len() > 256 || k.chars().any(|c| c.is_control()) {
            return Err(invalid(format!(
                "tag key {k:?} must be 1 to 256 printable bytes"
            )));
        }
        if v.len() > 4096 || v.chars().any(|c| c.is_control()) {
            return Err(invalid(format!(
                "tag {k:?} has a value that is too long or not printable"
            )));
        }
    }
    Ok(())
}

/// A host name as snapshots record it: 1 to 255 bytes, no control characters, no leading or
/// trailing blanks.
pub fn validate_host(host: &str) -> Result<()> {
    if host.is_empty()
        || host.len() > 255
        || host.chars().any(|c| c.is_control())
        || host.trim() != host
    {
        return Err(invalid(format!(
            "host {host:?} must be 1 to 255 printable bytes without surrounding blanks"
        )));
    }
    Ok(())
}

/// A recorded command line: 1–4096 arguments, 64 KiB in all, no NUL (which no real argument
/// can hold), the program not empty.
pub fn validate_command(argv: &[String]) -> Result<()> {
    let total: usize = argv.iter().map(String::len).sum();
    if argv.is_empty() || argv[0].is_empty() || argv.len() > 4096 || total > 64 * 1024 {
        return Err(invalid(format!(
            "a command line must have 1 to 4096 arguments, 64 KiB in all, and a program name \
             (got {} arguments, {total} bytes)",
            argv.len()
        )));
    }
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(invalid("a command argument contains a NUL byte".into()));
    }
    Ok(())
}
