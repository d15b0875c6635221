# bytereplay relying-party policy: default
#
# ALLOWS a result when all of these hold:
#   - the EAR signature verifies against the pinned verifier keys and its claims are well formed;
#   - it is fresh: iat at most 300 s old (30 s leeway), not in the future beyond the leeway;
#   - the nonce matches, when the relying party gave one;
#   - the output bytes it holds hash to the attested output hash;
#   - every application check passes;
#   - the EAR status is affirming or warning (a simulated TEE rates hardware "warning":
#     it is accepted here, and the claim and the notes say no hardware protects the run);
#   - at least one claim of the trustworthiness vector is affirming;
#   - the replay verdict is `match` or `match-portable`.
# DENIES everything else, naming each reason: a signature, format, freshness, nonce or
#   output-hash failure; status contraindicated (evidence against the run) or none, or
#   a vector with no affirming claim (the verifier affirmed nothing); verdict `mismatch`
#   (a contradiction), `inconclusive` (environment and bytes both differ: no
#   confirmation) or `not-run` (no independent replay: the bytes rest on the attester's
#   word); a result without a verdict.
# A record with missing fields is allowed; the claim shrinks for each (see the notes).
# A result without a preflight report is allowed with a note (completeness unknown).
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

package bytereplay.policy.default

import rego.v1

max_age_seconds := 300

leeway_seconds := 30

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

deny_reasons contains concat("", ["status contraindicated: the verifier found evidence against this run (", claims_in("contraindicated"), ")"]) if {
	verified
	input.ear.status == "contraindicated"
}

deny_reasons contains "status none: the verifier affirmed nothing about this run" if {
	verified
	input.ear.status == "none"
}

deny_reasons contains "no affirming claim: the verifier affirmed nothing about this run" if {
	verified
	input.ear.status != "none"
	count([name | input.ear.tiers[name] == "affirming"]) == 0
}

diff_fields := concat(", ", [d.field | d := input.ear.environment_diff[_]])

deny_reasons contains "verdict mismatch: an independent replay in the same environment produced different bytes" if {
	verified
	input.ear.verdict == "mismatch"
}

deny_reasons contains concat("", ["verdict inconclusive: the replay environment differed (", diff_fields, ") and so did the bytes; this policy accepts only match or match-portable"]) if {
	verified
	input.ear.verdict == "inconclusive"
}

deny_reasons contains sprintf("verdict not-run (%s): no independent replay reproduced the bytes; this policy accepts only match or match-portable", [input.ear.replay_reason]) if {
	verified
	input.ear.verdict == "not-run"
}

deny_reasons contains "no replay verdict: the result does not say whether the bytes were reproduced" if {
	verified
	input.ear.verdict == null
}

# --- notes: remarks that do not decide ------------------------------------------------------

notes contains "the TEE is simulated: accepted by this policy; no hardware protects the run" if {
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

notes contains "no nonce was expected: freshness rests on iat alone" if {
	verified
	not input.checks.nonce.required
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
