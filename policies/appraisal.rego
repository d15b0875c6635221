# bytereplay verifier appraisal policy: check facts -> AR4SI trustworthiness vector.
#
# Evaluated by the verifier (regopy) once per appraisal with `input` = the facts of the
# appraisal pipeline. The verifier reads `data.bytereplay.appraisal.result`:
#   {"vector": {claim: value}, "reasons": [text]}
#
# Pessimistic start: every claim is 0 ("no claim"). A rule raises a claim only on
# evidence; when several rules speak to one claim the WORST value wins (values rise
# with severity: 0 none < 2 affirming < 32 warning < 96 contraindicated < 99), so no
# rule can talk a failure back up. AR4SI values used: 2 affirming, 32 warning (not
# recognised / not safe enough to affirm), 96 contraindicated, 99 cryptographic
# validation failed.
#
# Input (every member is always present; the verifier fills "not-run" where a step
# did not run because an earlier one failed):
#   evidence.decode        "ok" | "failed"          Evidence parsed (JWT or COSE, size-limited)
#                                                   and its claims agree (record digest,
#                                                   output hash, measurements, request)
#   evidence.signature     "ok" | "failed" | "not-run"   EAT signature by the key in cnf.jwk
#   evidence.quote         "ok" | "failed" | "not-run"   quote chain + report-data binding
#   evidence.measurements  "ok" | "differs" | "not-run"  quote registers vs the run record
#   nonce                  "ok" | "not-checked" | "missing" | "malformed" | "unknown"
#                          | "reused" | "expired" | "not-run"
#   challenge_window       "ok" | "differs" | "missing" | "not-run"  the run record's
#                          challenge window against the nonce's own issue and expiry times
#                          (checked once the nonce is consumed)
#   tee                    {"provider": text, "scheme": text, "simulated": bool,
#                           "hardware": bool, "chain_ok": bool, "tcb_status": text|null,
#                           "tcb_up_to_date": bool, "advisories": [text], "collateral":
#                           {name: RFC 3339}, "root": text|null, "test_root": bool}
#                          or null (null until a quote is accepted); `hardware` is true only
#                          when the vendor chain (or a test root, named in `root`), the
#                          signature, the collateral and an allowed TCB all held
#   reference.{model,container,runtime,framework}
#                          "matched" | "unmatched" | "missing" | "not-configured"
#                          (from the JSON file and CoRIM-provisioned values alike)
#   preflight              {"complete": bool, "missing": [field], "missing_before_replay": [field]}
#   request                "ok" | "differs" | "missing" | "not-run"
#   replay.verdict         "match" | "match-portable" | "mismatch" | "inconclusive" | "not-run"
#   replay.method          "full" | "teacher-forced": how the verdict was reached (either
#                          affirms executables; relying-party policies may require "full")
#   replay.bitwise         true | false | null: teacher-forced, prefill logits equalled the
#                          decode logits bit for bit where measured (null: not measured)
#   external               {service name: "ok" | "failed"}
#   devices                composite evidence, one member per device ({} otherwise):
#                          {"cpu" | "gpu0" | ...: {"kind": "cpu" | "gpu",
#                           "status": "ok" | "unbound" | "failed", "simulated": bool,
#                           "hardware": bool, "tcb_up_to_date": bool}}; "unbound": the
#                          GPU's SPDM nonce is not the one this session derives (replayed)
#   gpu_record             "ok" | "differs" | "not-compared": the run record's GPU (SKU,
#                          driver) against every accepted GPU evidence
#
# Output: `result` = {"vector", "reasons", "devices": {device name: vector}}.

package bytereplay.appraisal

import rego.v1

claims := [
	"instance-identity", "configuration", "executables", "file-system",
	"hardware", "runtime-opaque", "storage-opaque", "sourced-data",
]

refused_nonce := {"missing", "malformed", "unknown", "reused", "expired"}

# -- cryptographic validation ------------------------------------------------------

crypto_failed if input.evidence.decode == "failed"

crypto_failed if input.evidence.signature == "failed"

crypto_failed if input.evidence.quote == "failed"

# Any crypto failure: every claim 99.
contributions contains [c, 99] if {
	crypto_failed
	some c in claims
}

# The quote was accepted: its report data binds the nonce, the run record and the key.
bound if {
	input.evidence.signature == "ok"
	input.evidence.quote == "ok"
}

# ...and its signature was checked to a configured anchor (a simulated CA) or a vendor
# root. A tsm/nvidia quote without collateral is accepted unchecked: anyone can write
# one, so it binds nothing that can be affirmed.
verified if {
	bound
	input.tee.chain_ok == true
}

verified if {
	bound
	input.tee.hardware == true
}

# -- instance identity: the Evidence key is bound by a checked quote, and it is fresh --

contributions contains ["instance-identity", 2] if {
	verified
	input.nonce == "ok"
}

contributions contains ["instance-identity", 32] if {
	bound
	not verified
}

contributions contains ["instance-identity", 32] if {
	bound
	input.nonce == "not-checked"
}

contributions contains ["instance-identity", 96] if input.nonce in refused_nonce

# The record names another challenge window than the one its nonce was issued with: the
# evidence contradicts itself about freshness.
contributions contains ["instance-identity", 96] if input.challenge_window == "differs"

# -- hardware: a simulated TEE is a warning, never better ---------------------------

contributions contains ["hardware", 32] if {
	bound
	input.tee.simulated == true
}

contributions contains ["hardware", 2] if {
	bound
	input.tee.simulated == false
	input.tee.hardware == true
	input.tee.tcb_up_to_date == true
}

# Verified to the vendor root, but with a TCB the operator allows that is not up to date
# (e.g. OutOfDate, SWHardeningNeeded): the status and advisories are in the EAR.
contributions contains ["hardware", 32] if {
	bound
	input.tee.simulated == false
	input.tee.hardware == true
	input.tee.tcb_up_to_date == false
}

# A real TEE quote whose hardware signature was not checked to a vendor root.
contributions contains ["hardware", 32] if {
	bound
	input.tee.simulated == false
	input.tee.hardware == false
}

contributions contains ["runtime-opaque", 2] if {
	bound
	input.tee.simulated == false
	input.tee.hardware == true
}

contributions contains ["hardware", 96] if {
	some name
	input.external[name] == "failed"
}

# -- the quote's measurement registers contradict the run record -------------------

contributions contains ["executables", 96] if input.evidence.measurements == "differs"

contributions contains ["configuration", 96] if input.evidence.measurements == "differs"

# -- reference values ----------------------------------------------------------------

reference_value(s) := 2 if s == "matched"

reference_value(s) := 32 if s == "missing"

reference_value(s) := 96 if s == "unmatched"

# A match affirms only what a checked quote vouches for; a miss counts whenever the
# Evidence is signed (its own record names a model or image that is not allowed).
reference_counts(v) if v != 2

reference_counts(2) if verified

contributions contains ["executables", v] if {
	bound
	v := reference_value(input.reference.model)
	reference_counts(v)
}

contributions contains ["executables", v] if {
	bound
	v := reference_value(input.reference.container)
	reference_counts(v)
}

contributions contains ["configuration", v] if {
	bound
	v := reference_value(input.reference.runtime)
	reference_counts(v)
}

contributions contains ["configuration", v] if {
	bound
	v := reference_value(input.reference.framework)
	reference_counts(v)
}

# -- preflight: determinism-relevant configuration not fully recorded ---------------

contributions contains ["configuration", 32] if {
	bound
	count(input.preflight.missing_before_replay) > 0
}

# -- the recorded request contradicts the run record --------------------------------

contributions contains ["executables", 96] if input.request == "differs"

# -- replay verdict --------------------------------------------------------------------

replay_value := {
	"match": 2,
	"match-portable": 2,
	"inconclusive": 32,
	"mismatch": 96,
}

contributions contains ["executables", v] if {
	bound
	v := replay_value[input.replay.verdict]
}

# -- the run record against the GPU evidence ------------------------------------------

# The record names another GPU SKU or driver than the GPU evidence: a contradiction.
contributions contains ["configuration", 96] if input.gpu_record == "differs"

# -- composite evidence: the run is no better than its worst device ----------------

contributions contains ["hardware", 96] if {
	some d in input.devices
	d.status == "failed"
}

contributions contains ["instance-identity", 96] if {
	some d in input.devices
	d.status == "unbound"
}

contributions contains ["hardware", 32] if {
	some d in input.devices
	d.status == "ok"
	d.hardware == false
}

# Each device's own vector (the EAR's submods cpu, gpu0, ...): [device, claim, value].
device_contributions contains [name, "hardware", 2] if {
	some name, d in input.devices
	d.status == "ok"
	d.simulated == false
	d.hardware == true
	d.tcb_up_to_date == true
}

device_contributions contains [name, "hardware", 32] if {
	some name, d in input.devices
	d.status == "ok"
	d.hardware == false
}

device_contributions contains [name, "hardware", 32] if {
	some name, d in input.devices
	d.status == "ok"
	d.hardware == true
	d.tcb_up_to_date == false
}

device_contributions contains [name, "hardware", 96] if {
	some name, d in input.devices
	d.status == "failed"
}

device_contributions contains [name, "instance-identity", 2] if {
	some name, d in input.devices
	d.status == "ok"
	input.nonce == "ok"
}

device_contributions contains [name, "instance-identity", 32] if {
	some name, d in input.devices
	d.status == "ok"
	input.nonce == "not-checked"
}

device_contributions contains [name, "instance-identity", 96] if {
	some name, d in input.devices
	d.status == "unbound"
}

device_contributions contains [name, "instance-identity", 96] if {
	some name, _ in input.devices
	input.nonce in refused_nonce
}

device_contributions contains [name, "configuration", 96] if {
	some name, d in input.devices
	d.kind == "gpu"
	input.gpu_record == "differs"
}

device_contributions contains [name, "configuration", 2] if {
	some name, d in input.devices
	d.kind == "gpu"
	d.status == "ok"
	input.gpu_record == "ok"
}

device_vectors := {name: vec |
	some name, _ in input.devices
	vec := {c: v |
		some c in claims
		vals := {x | some p in device_contributions; p[0] == name; p[1] == c; x := p[2]}
		count(vals) > 0
		v := max(vals)
	}
}

# -- the vector: the worst contribution per claim, 0 where none ---------------------

vector := {c: v |
	some c in claims
	v := max({x | some p in contributions; p[0] == c; x := p[1]} | {0})
}

reasons contains "cryptographic validation of the Evidence failed" if crypto_failed

reasons contains sprintf("nonce refused: %s", [input.nonce]) if input.nonce in refused_nonce

reasons contains "the run record's challenge window is not the one its nonce was issued with" if {
	input.challenge_window == "differs"
}

reasons contains "nonce not checked: this verifier did not issue it" if input.nonce == "not-checked"

reasons contains "simulated TEE: hardware is a warning at best" if input.tee.simulated == true

reasons contains "the quote's signature was not checked (no collateral): its binding is not proof" if {
	bound
	not verified
}

reasons contains "quote measurements differ from the run record" if {
	input.evidence.measurements == "differs"
}

reasons contains sprintf("reference value %s: %s", [k, s]) if {
	some k, s in input.reference
	s in {"unmatched", "missing"}
}

reasons contains concat("", ["run record lacks before-replay items: ", concat(", ", missing)]) if {
	missing := input.preflight.missing_before_replay
	count(missing) > 0
}

reasons contains "recorded request differs from the run record" if input.request == "differs"

reasons contains sprintf("replay verdict: %s", [input.replay.verdict]) if {
	input.replay.verdict in {"mismatch", "inconclusive"}
}

reasons contains sprintf("replay verdict %s by teacher forcing", [input.replay.verdict]) if {
	input.replay.method == "teacher-forced"
	input.replay.verdict in {"mismatch", "inconclusive"}
}

reasons contains sprintf("external token from %s failed", [name]) if {
	some name
	input.external[name] == "failed"
}

reasons contains "the run record's GPU (SKU or driver) contradicts the GPU evidence" if {
	input.gpu_record == "differs"
}

reasons contains concat("", ["device ", name, ": GPU evidence bound to another session"]) if {
	some name, d in input.devices
	d.status == "unbound"
}

reasons contains concat("", ["device ", name, ": GPU evidence refused"]) if {
	some name, d in input.devices
	d.status == "failed"
}

result := {"vector": vector, "reasons": sort([r | some r in reasons]), "devices": device_vectors}
