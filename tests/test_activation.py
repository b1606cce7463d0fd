"""Upload-ready audience files: normalisation/hashing vectors, headers, holdout, minimum
size, atomic and deterministic writes, and the PII scan."""

import hashlib
import json
import os

import pandas as pd
import pytest

from dagster_project.lib import activation as act


def h(s):
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


# --- published example vectors -------------------------------------------------------------
# Meta Conversions API "Customer information parameters" documents these inputs, normalised
# forms and expected SHA-256 outputs literally.
META_VECTORS = {
    "john_smith@gmail.com": "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f",
    "16505551212": "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176",
    "mary": "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec",
    "valéry": "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c",
}


def test_meta_documented_vectors():
    assert act.sha256_hex(act.normalize_email("John_Smith@gmail.com")) == \
        META_VECTORS["john_smith@gmail.com"]
    assert act.sha256_hex(act.normalize_phone_meta("(650)555-1212", "US")) == \
        META_VECTORS["16505551212"]
    assert act.sha256_hex(act.normalize_name_meta("Mary")) == META_VECTORS["mary"]
    assert act.sha256_hex(act.normalize_name_meta("Valéry")) == META_VECTORS["valéry"]


def test_google_email_and_phone_rules():
    # Google: trim + lower-case the email ("  Test@Gmail.com " -> "test@gmail.com")
    assert act.normalize_email("  Test@Gmail.com ") == "test@gmail.com"
    assert act.sha256_hex(act.normalize_email("  Test@Gmail.com ")) == h("test@gmail.com")
    # Google: E.164 with the leading "+"; Meta: the same digits without "+"
    assert act.normalize_phone_e164("+1 (800) 555-0100") == "+18005550100"
    assert act.sha256_hex(act.normalize_phone_e164("+1 (800) 555-0100")) == h("+18005550100")
    assert act.normalize_phone_meta("+1 (800) 555-0100") == "18005550100"
    assert act.normalize_email("not-an-email") is None
    assert act.normalize_email("   ") is None


@pytest.mark.parametrize("raw,country,e164", [
    ("030 1234567", "DE", "+49301234567"),
    ("0151-23456789", "de", "+4915123456789"),
    ("01 23 45 67 89", "FR", "+33123456789"),
    ("020 7946 0018", "GB", "+442079460018"),
    ("(800) 555-0100", "US", "+18005550100"),
    ("1-800-555-0100", "US", "+18005550100"),
    ("020 123 4567", "NL", "+31201234567"),
    ("912 345 678", "ES", "+34912345678"),
    ("06 1234 5678", "IT", "+390612345678"),   # Italy keeps the leading 0 in E.164
    ("0049 30 1234567", None, "+49301234567"),  # international prefix 00
    ("+44 20 7946 0018", "DE", "+442079460018"),  # explicit country code wins
    # found: the trunk digit written inside an international number, '+49 (0)30 ...'
    ("+49 (0)30 1234567", "DE", "+49301234567"),
    ("+44 (0) 20 7946 0018", None, "+442079460018"),
    ("0049 (0)30 1234567", None, "+49301234567"),
    # found: Austrian and Belgian numbers were dropped (no rule for their country)
    ("0664 1234567", "AT", "+436641234567"),
    ("0470 12 34 56", "BE", "+32470123456"),
    ("079 123 45 67", "CH", "+41791234567"),
])
def test_national_formats_to_e164(raw, country, e164):
    assert act.normalize_phone_e164(raw, country) == e164
    assert act.normalize_phone_meta(raw, country) == e164[1:]


@pytest.mark.parametrize("raw,country", [
    ("030 1234567", None), ("call me", "DE"), ("12", "US"),
    ("+0 123 4567", None), ("", "DE"), (None, "DE"),
    # found: '+'-numbers that are no valid number of the country they name were hashed
    ("+49 123", None), ("+1 555 01", "US"), ("+44 7946", None), ("=1+2", "DE"),
])
def test_unparseable_phone_is_null(raw, country):
    assert act.normalize_phone_e164(raw, country) is None


def test_google_and_meta_names_lose_punctuation_and_extra_spaces():
    for rule in (act.normalize_name_google, act.normalize_name_meta):
        assert rule("  Mary-Ann   O'Neil ") == "maryann oneil"
        assert rule("Dr. Jürgen") == "dr jürgen"
        assert rule(" .. ") is None


@pytest.mark.parametrize("raw,country,meta", [
    ("SW1A 1AA", "GB", "sw1a1"),   # UK: area, district and sector
    ("M1 1AE", "gb", "m11"),
    ("sw1a1aa", "GB", "sw1a1"),    # written without the space
    ("94105-1234", "US", "94105"),  # US: the first 5 digits
    ("10115", "DE", "10115"),
    ("1010-001", "PT", "1010001"),
])
def test_meta_postcodes_follow_its_per_country_rule(raw, country, meta):
    assert act.normalize_zip_meta(raw, country) == meta


def test_the_manifest_gives_match_key_coverage_and_warns_near_the_minimum(tmp_path):
    raw = raw_members({"win_back": 150})
    raw.loc[raw.index[:40], ["email", "phone"]] = None  # 40 with a name and postal code only
    raw.loc[raw.index[:10], "zip"] = None                # 10 of them with no key at all
    prepared, stats = act.prepare_audience_members(raw)
    man = act.write_audience_exports(prepared, tmp_path, "2025-03-01", "run-1", GATE_OK,
                                     stats=stats)
    entry = man["audiences"]["win_back"]
    assert entry["match_keys"] == {"email": round(110 / 150, 3), "phone": round(110 / 150, 3),
                                   "name_and_address": round(140 / 150, 3),
                                   "rows_with_a_key": 140}
    assert entry["exported"] and "140 rows with a match key" in entry["warning"]
    assert set(man["upload_notes"]) == {"google", "meta", "suppression"}

    raw.loc[raw.index[:60], ["email", "phone", "zip"]] = None  # 90 rows with a key < 100
    prepared, stats = act.prepare_audience_members(raw)
    man = act.write_audience_exports(prepared, tmp_path, "2025-03-02", "run-2", GATE_OK,
                                     stats=stats)
    entry = man["audiences"]["win_back"]
    assert not entry["exported"] and "90 of 150 exportable members have a match key" in \
        entry["reason"]


def raw_members(sizes, holdout_every=0, seed_offset=0):
    rows = []
    for aud, n in sizes.items():
        for i in range(n):
            rows.append({
                "audience": aud, "customer_id": f"C{i + seed_offset:06d}",
                "marketing_consent": True,
                "holdout": bool(holdout_every and i % holdout_every == 0),
                "email": f"  User{i}@Example.COM ", "phone": f"030 {1000000 + i}",
                "first_name": " Anna-Lena ", "last_name": "Müller", "country": "de",
                "zip": "10115",
            })
    return pd.DataFrame(rows)


GATE_OK = {"suite": "audiences", "success": True, "n_expectations": 20, "n_failed": 0}


def file_hashes(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def test_prepare_hashes_everything():
    prepared, stats = act.prepare_audience_members(raw_members({"a": 3}))
    r = prepared.iloc[0]
    assert r.email_sha256 == h("user0@example.com")
    assert r.phone_google_sha256 == h("+49301000000")
    assert r.phone_meta_sha256 == h("49301000000")
    assert r.fn_google_sha256 == h("annalena") and r.fn_meta_sha256 == h("annalena")
    assert r.extern_id_sha256 == h("C000000")
    assert r.ln_meta_sha256 == h("müller")
    assert r.country == "DE" and r.country_meta_sha256 == h("de")
    assert r.zip == "10115" and r.zip_meta_sha256 == h("10115")
    assert stats == {"a": {"unparseable_phones": 0, "invalid_emails": 0, "invalid_countries": 0,
                           "invalid_zips": 0}}
    raw = raw_members({"a": 2})
    raw.loc[0, "phone"] = "not a phone"
    _, stats = act.prepare_audience_members(raw)
    assert stats["a"]["unparseable_phones"] == 1


def test_files_headers_holdout_and_manifest(tmp_path):
    prepared, stats = act.prepare_audience_members(
        raw_members({"win_back": 130}, holdout_every=10))
    man = act.write_audience_exports(prepared, tmp_path, "2025-03-01", "run-1", GATE_OK,
                                     stats=stats)
    folder = tmp_path / "2025-03-01" / "win_back"
    g = (folder / act.GOOGLE_FILE).read_text().splitlines()
    m = (folder / act.META_FILE).read_text().splitlines()
    assert g[0] == "Email,Phone,First Name,Last Name,Country,Zip"
    assert m[0] == "email,phone,fn,ln,country,zip,extern_id"
    assert len(g) - 1 == 130 - 13 == len(m) - 1          # holdout members left out
    assert g[1].endswith(",DE,10115")                      # Google: country/zip unhashed
    assert all(len(c) == 64 for c in m[1].split(","))    # Meta: everything hashed
    entry = man["audiences"]["win_back"]
    assert entry["exported"] and entry["holdout_excluded"] == 13 and entry["eligible"] == 117
    assert entry["files"][act.GOOGLE_FILE]["sha256"] == \
        hashlib.sha256((folder / act.GOOGLE_FILE).read_bytes()).hexdigest()
    on_disk = json.loads((tmp_path / "2025-03-01" / "manifest.json").read_text())
    assert on_disk == man and on_disk["run_id"] == "run-1"
    assert act.scan_export_for_pii(folder / act.GOOGLE_FILE) == []
    assert act.scan_export_for_pii(folder / act.META_FILE) == []
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]


def test_audience_under_minimum_not_exported(tmp_path):
    """Fault 6: an audience under the platform minimum is skipped, reason in the manifest;
    files left from an earlier run of the same day are removed."""
    prepared, _ = act.prepare_audience_members(raw_members({"big": 150, "tiny": 120}))
    act.write_audience_exports(prepared, tmp_path, "2025-03-01", "run-1", GATE_OK)
    assert (tmp_path / "2025-03-01" / "tiny" / act.GOOGLE_FILE).exists()
    prepared, _ = act.prepare_audience_members(raw_members({"big": 150, "tiny": 99}))
    man = act.write_audience_exports(prepared, tmp_path, "2025-03-01", "run-2", GATE_OK)
    tiny = man["audiences"]["tiny"]
    assert tiny["exported"] is False and "99 exportable members < platform minimum 100" \
        in tiny["reason"]
    assert not (tmp_path / "2025-03-01" / "tiny" / act.GOOGLE_FILE).exists()
    assert not (tmp_path / "2025-03-01" / "tiny" / act.META_FILE).exists()
    assert man["audiences"]["big"]["exported"] is True
    man = act.write_audience_exports(prepared, tmp_path / "x", "2025-03-01", "r", GATE_OK,
                                     min_size=50)
    assert man["audiences"]["tiny"]["exported"] is True


def test_deterministic_byte_identical(tmp_path):
    raw = raw_members({"a": 120, "b": 110})
    p1, _ = act.prepare_audience_members(raw)
    p2, _ = act.prepare_audience_members(raw.sample(frac=1.0, random_state=3))
    act.write_audience_exports(p1, tmp_path / "one", "2025-03-01", "run-1", GATE_OK)
    act.write_audience_exports(p2, tmp_path / "two", "2025-03-01", "run-1", GATE_OK)
    assert file_hashes(tmp_path / "one") == file_hashes(tmp_path / "two")


def test_refuses_without_gate_or_with_opted_out(tmp_path):
    prepared, _ = act.prepare_audience_members(raw_members({"a": 120}))
    with pytest.raises(act.ExportRefused):
        act.write_audience_exports(prepared, tmp_path, "2025-03-01", "r", None)
    with pytest.raises(act.ExportRefused):
        act.write_audience_exports(prepared, tmp_path, "2025-03-01", "r",
                                   {"success": False, "summary": "FAILED"})
    prepared.loc[3, "marketing_consent"] = False
    with pytest.raises(act.ExportRefused, match="opted-out"):
        act.write_audience_exports(prepared, tmp_path, "2025-03-01", "r", GATE_OK)
    assert not list(tmp_path.rglob("*.csv"))


def test_scan_export_for_pii(tmp_path):
    f = tmp_path / "meta_custom_audience.csv"
    f.write_text("email,phone,fn,ln,country,zip\n"
                 f"{h('a@b.c')},{h('1')},{h('x')},{h('y')},{h('de')},{h('1')}\n"
                 "someone@example.com,,,,,\n"
                 ",+49 30 1234567,,,,\n"
                 ",0301234567,,,,\n"
                 ",,Anna,,,\n")
    found = act.scan_export_for_pii(f)
    assert len(found) == 4
    assert "raw email" in found[0] and ":3 " in found[0]
    assert "raw phone" in found[1] and "raw phone" in found[2]
    assert "not a sha256" in found[3]
    g = tmp_path / "google_customer_match.csv"
    g.write_text("Email,Phone,First Name,Last Name,Country,Zip\n"
                 f"{h('a@b.c')},{h('+1')},,,US,12345-6789\n")
    assert act.scan_export_for_pii(g) == []   # an unhashed US ZIP+4 is not a phone


# --------------------------------------------------------------------------- hostile fields
FORMULA = '=HYPERLINK("http://attacker.example","x")'


def test_a_formula_in_an_unhashed_field_is_left_out_counted_and_never_exported(tmp_path):
    """Found: a zip code =HYPERLINK(...) landed unhashed in google_customer_match.csv and the
    audience gate passed."""
    from dagster_project.lib.quality import check_audiences

    members = raw_members({"seg_a": 120})
    members.loc[0, "zip"] = FORMULA
    members.loc[1, "zip"] = "-1+2"
    members.loc[2, "country"] = "=1+1"
    members.loc[3, "zip"] = "SW1A 1AA"  # a real postcode with a space stays
    prepared, stats = act.prepare_audience_members(members)
    assert stats["seg_a"]["invalid_zips"] == 2 and stats["seg_a"]["invalid_countries"] == 1
    assert prepared["zip"].isna().sum() == 2 and prepared["country"].isna().sum() == 1
    assert "SW1A 1AA" in set(prepared["zip"])
    assert check_audiences(prepared).success
    act.write_audience_exports(prepared, tmp_path, "2025-03-01", "r", GATE_OK)
    for path in tmp_path.rglob("*.csv"):
        for line in path.read_text().splitlines():
            for cell in line.split(","):
                assert not cell.startswith(act.FORMULA_START), (path.name, cell)

    # a formula that got past the normalisers fails the gate and the writer refuses it
    forced = prepared.copy()
    forced.loc[0, "zip"] = FORMULA
    result = check_audiences(forced)
    assert not result.success and "zip" in result.summary_text()
    with pytest.raises(act.ExportRefused, match="column Zip.*formula"):
        act.write_audience_exports(forced, tmp_path / "forced", "2025-03-01", "r", GATE_OK)
    assert not list((tmp_path / "forced").rglob("*.csv"))


def test_export_files_are_for_the_owner_only_and_the_mode_is_configurable(tmp_path, monkeypatch):
    old = os.umask(0o022)
    try:
        prepared, _ = act.prepare_audience_members(raw_members({"seg_a": 120}))
        (tmp_path / "default").mkdir()  # an exports folder made before, world-readable
        os.chmod(tmp_path / "default", 0o755)
        act.write_audience_exports(prepared, tmp_path / "default", "2025-03-01", "r", GATE_OK)
        for p in (tmp_path / "default").rglob("*"):
            assert p.stat().st_mode & 0o777 == (0o700 if p.is_dir() else 0o600), p
        assert (tmp_path / "default").stat().st_mode & 0o777 == 0o700

        monkeypatch.setenv("DS_EXPORT_FILE_MODE", "0640")
        act.write_audience_exports(prepared, tmp_path / "group", "2025-03-01", "r", GATE_OK)
        for p in (tmp_path / "group").rglob("*"):
            assert p.stat().st_mode & 0o777 == (0o750 if p.is_dir() else 0o640), p

        monkeypatch.setenv("DS_EXPORT_FILE_MODE", "rw")
        with pytest.raises(ValueError, match="DS_EXPORT_FILE_MODE"):
            act.write_audience_exports(prepared, tmp_path / "bad", "2025-03-01", "r", GATE_OK)
    finally:
        os.umask(old)
