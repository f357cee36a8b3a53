"""This installation: facts about the platform and builds (`sysinfo`) and the checks behind
`convsim doctor` (`doctor`).

Contract: plain records, nothing printed; a library that fails to load is reported, not raised.
"""
