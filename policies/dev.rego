# bytereplay relying-party policy: dev
#
# For development and tests, never for production: it accepts what default refuses for
# lack of hardware or of a replay, and says so in its notes and in the claim.
# ALLOWS a result when all of these hold:
#   - the EAR signature verifies against the pinned verifier keys and its claims are well formed;
#   - it is fresh: iat at most 3600 s old (300 s leeway), not in the future beyond the leeway;
#   - the nonce matches, when the relying party gave one;
#   - the output bytes it holds hash to the attested output hash;
#   - every application check passes;
#   - the EAR status is not contraindicated;
#   - the replay verdict is not `mismatch`.
# It accepts, with a note each: a simulated TEE (the claim says no hardware protects the
#   run), status warning or none, verdict `inconclusive` (environment and bytes both
#   differ), `not-run` or no verdict at all (the bytes rest on the attester's word), an
#   incomplete run record (the claim is smaller), failed verifier check steps.
# DENIES, naming each reason: signature, format, freshness, nonce, output-hash and app-check
#   failures; status contraindicated; verdict `mismatch` (same environment, different bytes).
#
# INPUT (built once by relying_party.evaluate; the `checks` are done in Python). It holds
# no per-result values (no times, hashes, nonces), so decisions are memoised by it;
# "detail" is "ok" for a check that passed and says what failed otherwise:
# {
#   "version": 1,
#   "checks": {
#     "signature":   {"ok": bool, "detail": text},   # EAR JWS vs the pinned verifier key set
#     "format":      {"ok": bool, "detail": text},   # profile, status vs vector, bytereplay.* shapes
#     "fresh":       {"ok": bool, "detail": text,            # iat within this policy's window
#                     "max_age_seconds": int, "leeway_seconds": int},
#     "nonce":       {"ok": bool, "required": bool, "detail": text},  # required: a nonce was expected
#     "output_hash": {"ok": bool, "given": bool, "detail": text},  # given: output bytes passed
#     "app":         [{"name": text, "ok": bool, "detail": text}, ...]
#   },
#   "ear": null  (when the signature or the format check failed)
#        | {"profile": text, "status": "affirming"|"warning"|"contraindicated"|"none",
#           "vector": {claim: int}, "tiers": {claim: tier}, "policy_id": text|null,
#           "verifier_id": {...}, "verdict": "match"|"match-portable"|"mismatch"|
#           "inconclusive"|"not-run"|null, "environment_diff": [{"field", "recorded", "replayed"}],
#           "replay_reason": text, "replay_method": "full"|"teacher-forced"|null (null: no
#           replay claim; a claim without a method predates teacher forcing and reads "full"),
#           "replay_bitwise": bool|null (teacher-forced: prefill logits equalled decode logits
#           bit for bit where the verifier measured them; null: not measured),
#           "preflight": {"complete": bool|null, "missing": [text]},
#           "tee": {"provider": text|null, "simulated": bool, "hardware": bool,
#                   "scheme": text|null, "tcb_status": text|null, "root": text|null,
#                   "test_root": bool}|null,
#           "verifier_checks": {step: "ok"|failure text},
#           "submods": {name: {"status": tier, "vector": {claim: int}, "tiers": {claim: tier},
#                              "policy_ids": [text]}}}   # "status" above is the worst of these
# }
# All text in the input is made safe for rego-cpp (which returns strings unescaped):
# double quotes become ', backslashes /, control characters spaces. Build new strings with
# concat, or sprintf "%s" of input text only: rego-cpp quotes other strings given to sprintf.
# OUTPUT: decision = {"allow": count(deny_reasons) == 0, "reasons": deny_reasons, "notes": notes}
# PARAMETERS read by evaluate: max_age_seconds, leeway_seconds (the freshness window of iat).

package bytereplay.policy.dev

import rego.v1

max_age_seconds := 3600

leeway_seconds := 300

verified if {
	input.checks.signature.ok
	input.checks.format.ok
	input.ear != null
}

# --- facts checked in Python -------------------------------------------------------------

deny_reasons contains sprintf("signature: %s", [input.checks.signature.detail]) if {
	not input.checks.signature.ok
}

deny_reasons contains sprintf("format: %s", [input.checks.format.detail]) if {
	input.checks.signature.ok
	not input.checks.format.ok
}

deny_reasons contains sprintf("freshness: %s", [input.checks.fresh.detail]) if {
	verified
	not input.checks.fresh.ok
}

deny_reasons contains sprintf("nonce: %s", [input.checks.nonce.detail]) if {
	verified
	not input.checks.nonce.ok
}

deny_reasons contains sprintf("output hash: %s", [input.checks.output_hash.detail]) if {
	verified
	not input.checks.output_hash.ok
}

deny_reasons contains sprintf("app check %s failed: %s", [check.name, check.detail]) if {
	verified
	some check in input.checks.app
	not check.ok
}

# --- the attestation result ----------------------------------------------------------------

claims_in(tier) := concat(", ", sort([sprintf("%s=%d", [name, value]) |
	value := input.ear.vector[name]
	input.ear.tiers[name] == tier
]))

diff_fields := concat(", ", [d.field | d := input.ear.environment_diff[_]])

deny_reasons contains concat("", ["status contraindicated: the verifier found evidence against this run (", claims_in("contraindicated"), ")"]) if {
	verified
	input.ear.status == "contraindicated"
}

deny_reasons contains "verdict mismatch: an independent replay in the same environment produced different bytes" if {
	verified
	input.ear.verdict == "mismatch"
}

# --- notes: what this policy accepted that default or strict would not ----------------------

notes contains "dev policy: not for production decisions" if {
	verified
}

notes contains "the TEE is simulated: accepted by the dev policy; no hardware protects the run" if {
	verified
	input.ear.tee.simulated == true
}

notes contains "the result carries no preflight report: the completeness of the run record is unknown" if {
	verified
	input.ear.preflight.complete == null
}

notes contains "the result names no TEE" if {
	verified
	input.ear.tee == null
}

notes contains concat("", ["status warning: ", claims_in("warning")]) if {
	verified
	input.ear.status == "warning"
}

notes contains "status none: the verifier affirmed nothing about this run" if {
	verified
	input.ear.status == "none"
}

notes contains concat("", ["verdict inconclusive: accepted by the dev policy; the replay environment differed (", diff_fields, ") and so did the bytes"]) if {
	verified
	input.ear.verdict == "inconclusive"
}

notes contains sprintf("verdict not-run (%s): accepted by the dev policy; the bytes rest on the attester's word", [input.ear.replay_reason]) if {
	verified
	input.ear.verdict == "not-run"
}

notes contains "no replay verdict: accepted by the dev policy; the bytes rest on the attester's word" if {
	verified
	input.ear.verdict == null
}

notes contains concat("", ["replay matched in a different environment (", diff_fields, ")"]) if {
	verified
	input.ear.verdict == "match-portable"
}

notes contains concat("", [
	sprintf("the run record lacks %d field(s) (", [count(input.ear.preflight.missing)]),
	concat(", ", input.ear.preflight.missing),
	"): the claim is smaller",
]) if {
	verified
	count(input.ear.preflight.missing) > 0
}

notes contains sprintf("verifier check %s: %s", [step, text]) if {
	verified
	some step, text in input.ear.verifier_checks
	text != "ok"
}

# A test root stands in for the vendor's only in tests: say so in every decision it reaches.
notes contains concat("", ["the TEE was verified to a TEST ROOT (", input.ear.tee.root, "), not to a vendor root"]) if {
	verified
	input.ear.tee.test_root == true
}

notes contains "replay by teacher forcing: every recorded token was re-derived from the model's logits in one forward pass (not regenerated); accepted by this policy" if {
	verified
	input.ear.replay_method == "teacher-forced"
}

decision := {
	"allow": count(deny_reasons) == 0,
	"reasons": sort(deny_reasons),
	"notes": sort(notes),
}
