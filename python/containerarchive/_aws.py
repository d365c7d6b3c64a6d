"""Where an ``s3://`` repository's credentials, region and endpoint come from, resolved as the
AWS CLI and SDKs do, so that a machine set up with ``aws configure`` works unchanged.

Order (first found wins, per setting):

- credentials: ``AWS_ACCESS_KEY_ID`` + ``AWS_SECRET_ACCESS_KEY`` (+ ``AWS_SESSION_TOKEN``);
  then the profile's ``aws_access_key_id``/``aws_secret_access_key``/``aws_session_token`` in the
  shared credentials file (``AWS_SHARED_CREDENTIALS_FILE``, default ``~/.aws/credentials``),
  then in the config file (``AWS_CONFIG_FILE``, default ``~/.aws/config``); then web identity
  (``AWS_WEB_IDENTITY_TOKEN_FILE`` + ``AWS_ROLE_ARN``), the container credentials endpoint
  (``AWS_CONTAINER_CREDENTIALS_RELATIVE_URI``) and the EC2 instance metadata service, which the
  ``object_store`` client handles;
- region: ``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile's ``region``, ``us-east-1``;
- endpoint: ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, the profile's ``endpoint_url``.

The profile is ``AWS_PROFILE`` (or ``AWS_DEFAULT_PROFILE``), else ``default``; in the config file
it is the section ``[profile NAME]`` (``[default]`` for the default one). Profiles that obtain
credentials by other means (``credential_process``, SSO, ``role_arn``) are not supported: the
error says so rather than falling through to a confusing one.
"""

from __future__ import annotations

import configparser
import json
import os
from pathlib import Path

from .errors import InvalidArgumentError, StorageError

_KEYS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
_UNSUPPORTED = ("credential_process", "sso_start_url", "sso_session", "role_arn")


def _read(path: Path) -> configparser.RawConfigParser | None:
    """The INI file at ``path``, or None when there is none."""
    parser = configparser.RawConfigParser(default_section="\0none")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise _failure(f"cannot read the AWS file {path}: {getattr(e, 'strerror', e)}") from None
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as e:
        first = str(e).splitlines()[0]
        raise _failure(f"the AWS file {path} is not valid INI: {first}") from None
    return parser


def _failure(message: str) -> StorageError:
    e = StorageError(message)
    e.key = "s3"
    return e


def _section(parser: configparser.RawConfigParser | None, name: str) -> dict[str, str]:
    if parser is None or not parser.has_section(name):
        return {}
    return {k.lower(): v.strip() for k, v in parser.items(name)}


def settings(location: str, retry_seconds: float | None) -> str | None:
    """The storage options (JSON for the native layer) of an ``s3://`` location; None for a
    directory. Raises :class:`StorageError` for an unreadable AWS file or a profile that does
    not exist or cannot be used."""
    if not location.startswith("s3://"):
        return None
    env = os.environ
    out: dict[str, object] = {}
    if retry_seconds is not None:
        out["retry_seconds"] = retry_seconds
    home = Path.home()
    cred_path = Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws" / "credentials")
    conf_path = Path(env.get("AWS_CONFIG_FILE") or home / ".aws" / "config")
    variable = "AWS_PROFILE" if env.get("AWS_PROFILE") else "AWS_DEFAULT_PROFILE"
    named = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE")
    profile = named or "default"
    for have, lack in (
        ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
        ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"),
    ):
        if env.get(have) and not env.get(lack):
            raise _failure(f"{have} is set but {lack} is not: set both, or neither")
    have_env_keys = bool(env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"))

    creds = _read(cred_path)
    conf = _read(conf_path)
    from_creds = _section(creds, profile)
    from_conf = _section(conf, "default" if profile == "default" else f"profile {profile}")
    if named and not from_creds and not from_conf and not have_env_keys:
        raise _failure(
            f"AWS profile {named!r} ({variable}) is in neither {cred_path} nor {conf_path}"
        )

    if not have_env_keys:
        for source in (from_creds, from_conf):
            if source.get("aws_access_key_id") and source.get("aws_secret_access_key"):
                out["access_key_id"] = source["aws_access_key_id"]
                out["secret_access_key"] = source["aws_secret_access_key"]
                if source.get("aws_session_token"):
                    out["session_token"] = source["aws_session_token"]
                break
        else:
            other = [k for k in _UNSUPPORTED if k in from_creds or k in from_conf]
            if other and not env.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
                raise _failure(
                    f"AWS profile {profile!r} gets its credentials through {other[0]}, which "
                    "containerarchive does not support: export AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY (for example from `aws configure "
                    "export-credentials --format env`)"
                )
    if not (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")):
        region = from_conf.get("region") or from_creds.get("region")
        if region:
            out["region"] = region
    if not (env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")):
        endpoint = from_conf.get("endpoint_url") or from_creds.get("endpoint_url")
        if endpoint:
            out["endpoint"] = endpoint
    out["credential_sources"] = (
        f"AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profile {profile!r} in {cred_path}"
        f"{'' if creds is not None else ' (no such file)'} and {conf_path}"
        f"{'' if conf is not None else ' (no such file)'}"
    )
    return json.dumps(out)


def retry_seconds(value: float | None) -> float | None:
    """The storage retry budget: the argument, else ``CONTAINERARCHIVE_RETRY_STORAGE``."""
    if value is not None:
        return value
    text = os.environ.get("CONTAINERARCHIVE_RETRY_STORAGE")
    if not text:
        return None
    from ._args import parse_duration

    try:
        return parse_duration(text).total_seconds()
    except InvalidArgumentError as e:
        raise InvalidArgumentError(f"CONTAINERARCHIVE_RETRY_STORAGE: {e}") from None
