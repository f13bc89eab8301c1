"""Compute vouchers: the entity import, attribution of claims to metered allocations,
the monthly audit, signed audit packs and restatements, tenant statements, programme
effectiveness."""
