"""Quote verification, one module per TEE scheme, behind `verifier.tee.base`."""
