"""What to measure and whether the plan can work: studies, the request plan, server facts as data, the check's
rules (pure functions of facts)."""
