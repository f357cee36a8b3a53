"""This installation: facts about the platform and builds (`sysinfo`), the torch accelerators
training can use (`devices`) and the checks behind `convsim doctor` (`doctor`).

Contract: plain records, nothing printed; a library that fails to load is reported, not raised.
"""
