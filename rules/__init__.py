"""Policies: loading and validating JSON, calendars and business time, the SLA clock, the
business-rules variables and actions, and the planner.

Nothing here performs I/O beyond reading a policy file, and nothing reads the wall clock:
`now` is always passed in.
"""
