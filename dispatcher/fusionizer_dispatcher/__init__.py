"""fusionizer dispatcher runtime (filled in by the dispatcher work)."""
