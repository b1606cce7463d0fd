"""Upload-ready audience files for Google Customer Match and Meta custom audiences.

Normalisation and hashing rules (SHA-256, lower-case hex digest):

Google Customer Match (Google Ads API "Customer Match" / "normalize and hash user-provided
data"; Display & Video 360 "Prepare user data"; CSV template headers
``Email,Phone,First Name,Last Name,Country,Zip``):
- email: trim, lower-case, then hash.
- phone: E.164 *with* the leading "+" (e.g. "+18005550100"), then hash.
- first / last name: lower-case, no punctuation, inner spaces collapsed to one, then hash.
- country: two-letter ISO 3166-1 code, NOT hashed; zip: NOT hashed.

Meta custom audiences (Marketing API "Custom Audiences -- hashing and normalizing data" and
Conversions API "Customer information parameters"; list headers ``email,phone,fn,ln,
country,zip,extern_id``):
- email: trim, lower-case, hash ("John_Smith@gmail.com" -> "john_smith@gmail.com").
- phone: digits only, country code kept, no "+", no leading zeros, hash
  ("(650)555-1212" US -> "16505551212").
- fn / ln: lower-case, no punctuation, UTF-8 kept ("Valéry" -> "valéry"), hash.
- country: lower-case two-letter ISO 3166-1 code, hashed.
- zip: lower-case, no spaces or dashes; US: the first 5 digits; UK: area, district and
  sector ("SW1A 1AA" -> "sw1a1"); hashed.
- extern_id: the CRM customer id, hashed (send external_id from the pixel or the
  Conversions API hashed the same way, and Meta matches the two).

Phone numbers go through libphonenumber (the `phonenumbers` package: every country's
numbering plan, kept current by Google) with the customer's country for national numbers: a
number that is not a valid number of its country, or of the country its "+" prefix names, is
left out and counted (unparseable_phones), never hashed as it came.

Files are written to a temporary name in the same folder and `os.replace`d (readers keep the
old file); rows are sorted so identical input gives byte-identical files. A manifest per
as_of records counts, per-file sha256, and why an audience was not exported.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import phonenumbers

PLATFORM_MIN_SIZE = 100
GOOGLE_FILE = "google_customer_match.csv"
META_FILE = "meta_custom_audience.csv"
GOOGLE_HEADERS = ("Email", "Phone", "First Name", "Last Name", "Country", "Zip")
META_HEADERS = ("email", "phone", "fn", "ln", "country", "zip", "extern_id")
MANIFEST = "manifest.json"

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_RAW_PHONE = re.compile(r"^(?:\s*\+\s*\d|[\s().\-/]*(?:\d[\s().\-/]*){7,}$)")


class ExportRefused(RuntimeError):
    """The audience gate did not pass (or the input is not fit to export)."""


# --------------------------------------------------------------------------- normalising
def sha256_hex(value: str | None) -> str | None:
    if value is None:
        return None
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _blank(value: Any) -> bool:
    if value is None or isinstance(value, str):
        return value is None or value.strip() == ""
    return bool(pd.isna(value)) or str(value).strip() == ""


def normalize_email(value: Any) -> str | None:
    """Trim and lower-case (both platforms). Not an address (no single '@') -> None."""
    if _blank(value):
        return None
    s = str(value).strip().lower()
    if s.count("@") != 1 or s.startswith("@") or s.endswith("@") or " " in s:
        return None
    return s


def normalize_phone_e164(value: Any, country: Any = None) -> str | None:
    """'+<country code><number>' for a valid number, else None. A national number is read
    with the customer's country (libphonenumber); '00' starts an international one."""
    if _blank(value):
        return None
    s = str(value).strip()
    if s.startswith("00"):
        s = "+" + s[2:]
    region = None if _blank(country) else str(country).strip().upper()
    try:
        number = phonenumbers.parse(s, region if region and len(region) == 2 else None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_phone_meta(value: Any, country: Any = None) -> str | None:
    """Digits only, country code kept, no '+', no leading zeros."""
    e164 = normalize_phone_e164(value, country)
    return None if e164 is None else e164[1:].lstrip("0")


def _clean_name(value: Any) -> str | None:
    """Lower-case, no punctuation, inner spaces collapsed to one, accents kept (NFC)."""
    if _blank(value):
        return None
    s = unicodedata.normalize("NFC", str(value).strip().lower())
    s = "".join(ch for ch in s if not unicodedata.category(ch).startswith("P"))
    s = " ".join(s.split())
    return s or None


def normalize_name_google(value: Any) -> str | None:
    """Google: lower-case, no punctuation, inner spaces collapsed ("Mary-Ann  O'Neil" ->
    "maryann oneil")."""
    return _clean_name(value)


def normalize_name_meta(value: Any) -> str | None:
    """Meta: lower-case, no punctuation, UTF-8 kept ("Valéry" -> "valéry")."""
    return _clean_name(value)


def normalize_country(value: Any) -> str | None:
    """Two-letter ISO code, upper case (Google, unhashed); Meta lower-cases before hashing."""
    if _blank(value):
        return None
    s = str(value).strip().upper()
    return s if re.fullmatch(r"[A-Z]{2}", s) else None


# A postal code as the world writes them: letters and digits, inner spaces or dashes, 2 to 10
# characters, starting and ending with a letter or digit (10115, SW1A 1AA, 1010-001,
# 94105-1234). Anything else is left out of the files and counted (invalid_zips): a
# zip of '=HYPERLINK(...)' once reached Google's file unhashed.
ZIP_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 \-]{0,8}[A-Za-z0-9])?")
# What a spreadsheet reads as a formula at the start of a cell (OWASP "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def valid_zip(value: Any) -> str | None:
    """The trimmed postal code when it has a postal code's shape, else None."""
    if _blank(value):
        return None
    s = " ".join(str(value).split())
    return s if ZIP_RE.fullmatch(s) else None


def normalize_zip_google(value: Any) -> str | None:
    return valid_zip(value)


def normalize_zip_meta(value: Any, country: Any = None) -> str | None:
    """Lower-case, no spaces or dashes; US: the first 5 digits; GB: area, district and sector
    (the outward code and the inward code's first digit: "SW1A 1AA" -> "sw1a1")."""
    s = valid_zip(value)
    if s is None:
        return None
    cc = normalize_country(country)
    if cc == "GB":
        parts = s.lower().replace("-", " ").split()
        compact = "".join(parts)
        if len(parts) == 2 and parts[1][:1].isdigit():
            return parts[0] + parts[1][0]
        if 5 <= len(compact) <= 7 and compact[-3].isdigit():  # written without the space
            return compact[:-2]
        return compact or None
    s = re.sub(r"[\s\-]", "", s.lower())
    if cc == "US":
        s = s[:5]
    return s or None


# --------------------------------------------------------------------------- membership
SUPPRESSION_PREFIX = "suppress_"
PROFILE_COLUMNS = ("email", "phone", "first_name", "last_name", "country", "zip",
                   "marketing_consent")


def audience_members(segments: pd.DataFrame, exclusions: pd.DataFrame,
                     profile: pd.DataFrame, activation_segments) -> tuple[pd.DataFrame, dict]:
    """Raw members of every audience, ready for `prepare_audience_members`.

    Activation audiences: one per segment in `activation_segments`, its members the
    customers whose ``activate_<segment>`` flag is set (the segments layer already applied
    consent and the exclusions). Suppression audiences: one per exclusion audience, named
    ``suppress_<audience>`` -- do-not-target lists the platforms accept as exclusions.
    Consent is a hard filter for every upload (DESIGN.md §8), so suppression lists keep only
    customers with marketing consent; the count left out is returned per audience.

    ``marketing_consent`` and the contact fields come from `profile` (customer_id plus
    PROFILE_COLUMNS), the source of truth, not from the flags: the audience gate then checks
    consent independently of the logic that set the flags. ``holdout`` is False for every
    member: the hook where measurement's holdout assignment goes.
    Returns (members, stats) with stats[audience] = {"no_consent_left_out": n}.
    """
    frames = []
    for seg in activation_segments:
        flag = f"activate_{seg}"
        if flag not in segments.columns:
            continue
        ids = segments.loc[segments[flag].fillna(False).astype(bool), "customer_id"]
        frames.append(pd.DataFrame({"audience": seg, "audience_kind": "activation",
                                    "customer_id": ids.astype(str).to_numpy()}))
    if len(exclusions):
        ex = exclusions[["audience", "customer_id"]].drop_duplicates()
        frames.append(pd.DataFrame({
            "audience": SUPPRESSION_PREFIX + ex["audience"].astype(str),
            "audience_kind": "suppression",
            "customer_id": ex["customer_id"].astype(str).to_numpy()}))
    cols = ["audience", "audience_kind", "customer_id"]
    members = (pd.concat(frames, ignore_index=True) if frames
               else pd.DataFrame(columns=cols))
    prof = profile[["customer_id", *PROFILE_COLUMNS]].copy()
    prof["customer_id"] = prof["customer_id"].astype(str)
    members = members.merge(prof, on="customer_id", how="left")
    members["holdout"] = False
    stats: dict[str, dict[str, int]] = {}
    suppression = members["audience_kind"] == "suppression"
    no_consent = ~members["marketing_consent"].map(lambda v: v is True or v == True)
    dropped = members[suppression & no_consent]
    for aud, n in dropped.groupby("audience")["customer_id"].nunique().items():
        stats[str(aud)] = {"no_consent_left_out": int(n)}
    members = members[~(suppression & no_consent)]
    members = members.sort_values(["audience", "customer_id"], kind="stable")
    return members.reset_index(drop=True), stats


# --------------------------------------------------------------------------- preparing
PREPARED_COLUMNS = (
    "audience", "customer_id", "marketing_consent", "holdout",
    "email_sha256", "phone_google_sha256", "phone_meta_sha256",
    "fn_google_sha256", "ln_google_sha256", "fn_meta_sha256", "ln_meta_sha256",
    "country", "zip", "country_meta_sha256", "zip_meta_sha256", "extern_id_sha256",
)


def prepare_audience_members(members: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Raw members -> the hashed membership frame that is gated and exported.

    Input columns: audience, customer_id, marketing_consent, email, phone, first_name,
    last_name, country, zip and optionally holdout (default False). No raw identifier
    survives into the output. Returns (frame, stats) where stats counts unparseable phones
    and invalid emails per audience.
    """
    m = members.copy()
    if "holdout" not in m.columns:
        m["holdout"] = False
    for c in ("email", "phone", "first_name", "last_name", "country", "zip"):
        if c not in m.columns:
            m[c] = None
    recs = []
    stats: dict[str, dict[str, int]] = {}
    for r in m.itertuples(index=False):
        st = stats.setdefault(str(r.audience), {"unparseable_phones": 0, "invalid_emails": 0,
                                                "invalid_countries": 0, "invalid_zips": 0})
        email = normalize_email(r.email)
        if email is None and not _blank(r.email):
            st["invalid_emails"] += 1
        e164 = normalize_phone_e164(r.phone, r.country)
        if e164 is None and not _blank(r.phone):
            st["unparseable_phones"] += 1
        country = normalize_country(r.country)
        if country is None and not _blank(r.country):
            st["invalid_countries"] += 1
        if valid_zip(r.zip) is None and not _blank(r.zip):
            st["invalid_zips"] += 1
        recs.append({
            "audience": str(r.audience),
            "customer_id": str(r.customer_id),
            "marketing_consent": None if _blank(r.marketing_consent)
            else bool(r.marketing_consent),
            "holdout": False if _blank(r.holdout) else bool(r.holdout),
            "email_sha256": sha256_hex(email),
            "phone_google_sha256": sha256_hex(e164),
            "phone_meta_sha256": sha256_hex(None if e164 is None else e164[1:]),
            "fn_google_sha256": sha256_hex(normalize_name_google(r.first_name)),
            "ln_google_sha256": sha256_hex(normalize_name_google(r.last_name)),
            "fn_meta_sha256": sha256_hex(normalize_name_meta(r.first_name)),
            "ln_meta_sha256": sha256_hex(normalize_name_meta(r.last_name)),
            "country": country,
            "zip": normalize_zip_google(r.zip),
            "country_meta_sha256": sha256_hex(None if country is None else country.lower()),
            "zip_meta_sha256": sha256_hex(normalize_zip_meta(r.zip, r.country)),
            "extern_id_sha256": sha256_hex(str(r.customer_id)),
        })
    out = pd.DataFrame(recs, columns=list(PREPARED_COLUMNS))
    out = out.astype({"marketing_consent": "object", "holdout": "bool"})
    out = out.sort_values(["audience", "customer_id"], kind="stable").reset_index(drop=True)
    return out, stats


# --------------------------------------------------------------------------- files
def _csv_bytes(headers, rows) -> bytes:
    """The CSV, refusing any cell a spreadsheet would run as a formula: every exported value
    is a hash or a validated value (country, postal code), so such a cell is a defect."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(headers)
    for n, row in enumerate(rows, start=2):
        cells = ["" if v is None else str(v) for v in row]
        for header, cell in zip(headers, cells, strict=True):
            if cell.startswith(FORMULA_START) and not _HEX64.match(cell):
                raise ExportRefused(f"line {n}, column {header}: {cell[:40]!r} begins like a "
                                    "spreadsheet formula; nothing is written")
        w.writerow(cells)
    return buf.getvalue().encode("utf-8")


def export_file_mode() -> int:
    """Permissions of upload files and the manifest: DS_EXPORT_FILE_MODE (octal, default
    0600: hashed PII, for the owner only). Folders get the same bits plus search (x) where
    read is granted (0700 by default)."""
    raw = os.environ.get("DS_EXPORT_FILE_MODE", "").strip() or "0600"
    try:
        mode = int(raw, 8)
    except ValueError:
        raise ValueError(f"DS_EXPORT_FILE_MODE={raw!r}: expected an octal mode like 0600") from None
    if not 0 <= mode <= 0o777 or not mode & 0o600 == 0o600:
        raise ValueError(f"DS_EXPORT_FILE_MODE={raw!r}: expected an octal mode the owner can "
                         "read and write (0600..0666)")
    return mode


def export_dir_mode(file_mode: int) -> int:
    return file_mode | ((file_mode & 0o444) >> 2)


def ensure_private_dir(path: Path, stop_at: Path | None = None) -> None:
    """Create `path` (and parents) with the export folder mode; tighten existing folders
    from `path` up to `stop_at` (inclusive) to it."""
    mode = export_dir_mode(export_file_mode())
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    p = path
    while True:
        if (p.stat().st_mode & 0o777) != mode:
            os.chmod(p, mode)
        if stop_at is None or p == Path(stop_at) or p.parent == p:
            break
        p = p.parent


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same folder (created with the export file mode,
    never readable by others, not even for a moment), fsync, then os.replace."""
    path = Path(path)
    mode = export_file_mode()
    path.parent.mkdir(parents=True, exist_ok=True, mode=export_dir_mode(mode))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)  # the umask may have narrowed it; never widened
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _safe_dir(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("._")
    if not s:
        raise ValueError(f"audience name {name!r} gives an empty folder name")
    return s


def _none(v):
    return None if v is None or (not isinstance(v, str) and pd.isna(v)) else v


def google_rows(members: pd.DataFrame) -> list[tuple]:
    return [tuple(_none(v) for v in r) for r in members[[
        "email_sha256", "phone_google_sha256", "fn_google_sha256", "ln_google_sha256",
        "country", "zip"]].itertuples(index=False)]


def meta_rows(members: pd.DataFrame) -> list[tuple]:
    return [tuple(_none(v) for v in r) for r in members[[
        "email_sha256", "phone_meta_sha256", "fn_meta_sha256", "ln_meta_sha256",
        "country_meta_sha256", "zip_meta_sha256", "extern_id_sha256"]].itertuples(index=False)]


# An audience whose rows with a match key are fewer than this many times the platform minimum
# is exported with a warning: the platforms' minimum counts matched users, not rows.
NEAR_MINIMUM = 2

UPLOAD_NOTES = {
    "google": (f"{GOOGLE_FILE}: Google Ads > Audience manager > Customer list, 'Upload emails, "
               "phones, and/or mailing addresses', hashed (SHA-256) data; Country and Zip are "
               "plain, as Google asks."),
    "meta": (f"{META_FILE}: Ads Manager > Audiences > Custom audience > Customer list; every "
             "column is SHA-256 hashed and already normalised; extern_id is the hashed CRM "
             "customer id (send external_id hashed the same way from the pixel or the "
             "Conversions API)."),
    "suppression": ("suppress_* audiences are exclusion lists: add them as excluded audiences. "
                    "They hold only customers with marketing consent, like every upload "
                    "(no personal data goes to a platform without it)."),
}


def match_key_coverage(members: pd.DataFrame) -> dict[str, Any]:
    """Share of `members` (prepared rows) with each match key, and how many have one at all:
    an email, a phone, or a name with a postal code and country (the platforms' address key)."""
    n = len(members)
    email = members["email_sha256"].notna()
    phone = members["phone_google_sha256"].notna()
    address = (members["fn_google_sha256"].notna() & members["ln_google_sha256"].notna()
               & members["zip"].notna() & members["country"].notna())
    share = (lambda m: round(float(m.mean()), 3)) if n else (lambda m: 0.0)
    return {"email": share(email), "phone": share(phone), "name_and_address": share(address),
            "rows_with_a_key": int((email | phone | address).sum())}


def write_audience_exports(prepared: pd.DataFrame, exports_dir, as_of, run_id: str,
                           gate: Mapping[str, Any] | None, min_size: int = PLATFORM_MIN_SIZE,
                           stats: Mapping[str, Mapping[str, int]] | None = None,
                           extra: Mapping[str, Any] | None = None,
                           folder: Path | None = None) -> dict:
    """Write the upload files for every audience in `prepared`; return the manifest.

    `gate` is the audience gate result (e.g. ``SuiteResult.to_dict()`` or
    ``{"success": True, ...}``); without a passing gate nothing is written (ExportRefused).
    Holdout members are left out. Audiences with fewer than `min_size` exportable members
    are not exported (any files from an earlier run of the same as_of are removed) and the
    reason goes into the manifest. `extra` adds top-level manifest entries (e.g. the
    published versions and every suite's result); it cannot override the keys above.
    The files go to `folder` when given (the publish step's run folder, lib/exports.py),
    else to ``<exports_dir>/<as_of>``.
    """
    if not gate or not gate.get("success"):
        raise ExportRefused(f"audience gate did not pass: "
                            f"{(gate or {}).get('summary') or (gate or {}).get('error') or gate}")
    missing = [c for c in PREPARED_COLUMNS if c not in prepared.columns]
    if missing:
        raise ExportRefused(f"prepared audience frame lacks columns {missing}")
    consent = prepared["marketing_consent"]
    if not consent.map(lambda v: v is True or v == True).all():
        raise ExportRefused("an opted-out (or consent-unknown) customer is in an audience")

    as_of_str = str(pd.Timestamp(as_of).date())
    root = Path(folder) if folder is not None else Path(exports_dir) / as_of_str
    ensure_private_dir(root, stop_at=Path(exports_dir))
    manifest: dict[str, Any] = {
        "as_of_date": as_of_str, "run_id": str(run_id), "min_size": int(min_size),
        "gate": {k: gate.get(k) for k in ("suite", "success", "n_expectations", "n_failed")
                 if k in gate},
        "audiences": {},
    }
    manifest["upload_notes"] = UPLOAD_NOTES
    for k, v in (extra or {}).items():
        manifest.setdefault(str(k), v)
    for audience in sorted(prepared["audience"].astype(str).unique()):
        members = prepared[prepared["audience"].astype(str) == audience]
        holdout = members["holdout"].astype(bool)
        eligible = members[~holdout].sort_values("customer_id", kind="stable")
        entry: dict[str, Any] = {
            "members": len(members), "holdout_excluded": int(holdout.sum()),
            "eligible": len(eligible),
            **{k: int(v) for k, v in (stats or {}).get(audience, {}).items()},
        }
        folder = root / _safe_dir(audience)
        coverage = match_key_coverage(eligible)
        entry["match_keys"] = coverage
        usable = coverage["rows_with_a_key"]
        if len(eligible) < min_size or usable < min_size:
            entry.update(exported=False, reason=(
                f"{len(eligible)} exportable members < platform minimum {min_size}"
                if len(eligible) < min_size else
                f"{usable} of {len(eligible)} exportable members have a match key (email, "
                f"phone, or name with postal code) < platform minimum {min_size}"),
                files={})
            for fname in (GOOGLE_FILE, META_FILE):  # no stale upload from an earlier run
                if (folder / fname).exists():
                    (folder / fname).unlink()
            manifest["audiences"][audience] = entry
            continue
        files = {}
        ensure_private_dir(folder)
        for fname, headers, rows in (
                (GOOGLE_FILE, GOOGLE_HEADERS, google_rows(eligible)),
                (META_FILE, META_HEADERS, meta_rows(eligible))):
            data = _csv_bytes(headers, rows)
            atomic_write(folder / fname, data)
            files[fname] = {"rows": len(rows), "sha256": hashlib.sha256(data).hexdigest()}
        entry.update(exported=True, reason=None, files=files)
        if usable < NEAR_MINIMUM * min_size:
            entry["warning"] = (
                f"{usable} rows with a match key: platforms match only a share of them (often "
                f"half or less), so the matched audience may fall below their minimum of "
                f"{min_size}; check the match rate after uploading")
        manifest["audiences"][audience] = entry
    atomic_write(root / MANIFEST,
                 (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return manifest


# --------------------------------------------------------------------------- PII scan
_HASHED_HEADERS = {"Email", "Phone", "First Name", "Last Name",
                   "email", "phone", "fn", "ln", "country", "zip", "extern_id"}


def scan_export_for_pii(path) -> list[str]:
    """Raw emails / phones (or unhashed identifiers) in an export CSV; [] when clean.

    Any cell with '@' is a raw email; a cell that looks like a phone ('+digit', or >= 7
    digits with phone punctuation only) and is not a 64-hex digest is a raw phone (Google's
    unhashed Zip column is exempt from the phone rule only). In hashed columns (all Meta
    columns; Google's Email, Phone, First Name, Last Name) a non-empty cell must be 64-hex.
    """
    path = Path(path)
    findings: list[str] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        headers = next(reader, None) or []
        google = tuple(headers) == GOOGLE_HEADERS
        for lineno, row in enumerate(reader, start=2):
            for header, cell in zip(headers, row):
                if cell == "":
                    continue
                where = f"{path.name}:{lineno} column {header!r}"
                if "@" in cell:
                    findings.append(f"{where}: raw email")
                    continue
                if header not in ("Zip",) and not _HEX64.match(cell) and _RAW_PHONE.match(cell):
                    findings.append(f"{where}: raw phone")
                    continue
                hashed = header in _HASHED_HEADERS and not (google and header in ("Country",
                                                                                  "Zip"))
                if hashed and not _HEX64.match(cell):
                    findings.append(f"{where}: not a sha256 hex digest")
    return findings
