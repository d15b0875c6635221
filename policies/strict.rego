# bytereplay relying-party policy: strict
#
# For decisions that act on the output without a person in the loop.
# ALLOWS a result only when all of these hold:
#   - the EAR signature verifies against the pinned verifier keys and its claims are well formed;
#   - it is fresh: iat at most 120 s old (5 s leeway), not in the future beyond the leeway;
#   - the relying party expected a nonce (pass expected_nonce / --nonce) and it matches;
#   - the output bytes it holds hash to the attested output hash;
#   - every application check passes;
#   - the EAR status is affirming (every claim affirming or no claim; no warning), and so is
#     every submod's (composite evidence: each device, cpu, gpu0, ..., on its own);
#   - the TEE is hardware-backed: a simulated TEE, or a result naming no TEE, is refused;
#   - the replay verdict is `match`: same determinism-relevant environment, same bytes;
#   - the replay method is `full`, or `teacher-forced` with a measured bitwise agreement
#     between prefill and decode logits (`replay_bitwise` true); a teacher-forced match
#     without it rests on a tolerance, which this policy does not accept;
#   - the run record is complete: the preflight report lists no missing field;
#   - every verifier check step reads "ok".
# DENIES everything else, naming each reason (several reasons are listed when several fail).
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
#           "submods": {name: status} (every submod: bytereplay, and cpu, gpu0, ... for
#           composite evidence)}
# }
# All text in the input is made safe for rego-cpp (which returns strings unescaped):
# double quotes become ', backslashes /, control characters spaces. Build new strings with
# concat, or sprintf "%s" of input text only: rego-cpp quotes other strings given to sprintf.
# OUTPUT: decision = {"allow": count(deny_reasons) == 0, "reasons": deny_reasons, "notes": notes}
# PARAMETERS read by evaluate: max_age_seconds, leeway_seconds (the freshness window of iat).

package bytereplay.policy.strict

import rego.v1

max_age_seconds := 120

leeway_seconds := 5

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

deny_reasons contains "nonce: this policy requires a nonce the relying party expected; none was given" if {
	verified
	not input.checks.nonce.required
}

deny_reasons contains concat("", ["status ", input.ear.status, ": this policy requires affirming (", not_affirming, ")"]) if {
	verified
	input.ear.status != "affirming"
}

not_affirming := concat(", ", sort([sprintf("%s=%d", [name, value]) |
	value := input.ear.vector[name]
	input.ear.tiers[name] != "affirming"
]))

deny_reasons contains sprintf("verdict %s: this policy accepts only match", [input.ear.verdict]) if {
	verified
	is_string(input.ear.verdict)
	input.ear.verdict != "match"
}

deny_reasons contains "no replay verdict: this policy accepts only match" if {
	verified
	input.ear.verdict == null
}

deny_reasons contains "replay method teacher-forced without a measured bitwise agreement between prefill and decode: this policy requires a full replay or a bitwise one" if {
	verified
	input.ear.replay_method == "teacher-forced"
	input.ear.replay_bitwise != true
}

deny_reasons contains concat("", ["submod ", name, " is ", status, ": this policy requires every submod affirming"]) if {
	verified
	some name, status in input.ear.submods
	name != "bytereplay" # its status is the result's own, checked above
	status != "affirming"
}

deny_reasons contains "no TEE: the result names no TEE; this policy requires a hardware TEE" if {
	verified
	input.ear.tee == null
}

deny_reasons contains "TEE simulated: this policy requires a hardware TEE" if {
	verified
	input.ear.tee.simulated != false
}

deny_reasons contains "TEE not hardware-backed: this policy requires a hardware TEE" if {
	verified
	input.ear.tee.hardware != true
}

deny_reasons contains concat("", ["incomplete run record (missing: ", concat(", ", input.ear.preflight.missing), "): this policy requires a complete record"]) if {
	verified
	count(input.ear.preflight.missing) > 0
}

deny_reasons contains "no preflight report: this policy requires a complete record" if {
	verified
	count(input.ear.preflight.missing) == 0
	input.ear.preflight.complete != true
}

deny_reasons contains sprintf("verifier check %s failed: %s", [step, text]) if {
	verified
	some step, text in input.ear.verifier_checks
	text != "ok"
}

notes contains concat("", ["replay environment differed (", diff_fields, ")"]) if {
	verified
	count(input.ear.environment_diff) > 0
}

# A test root stands in for the vendor's only in tests: say so in every decision it reaches.
notes contains concat("", ["the TEE was verified to a TEST ROOT (", input.ear.tee.root, "), not to a vendor root"]) if {
	verified
	input.ear.tee.test_root == true
}

decision := {
	"allow": count(deny_reasons) == 0,
	"reasons": sort(deny_reasons),
	"notes": sort(notes),
}
