"""The run core: threads (= sessions), runs, the run store and run events.

No FastAPI here: every HTTP surface (`api/rest/`, `api/agent_protocol/`, …) parses its
wire format, makes one call into this package and translates the events it yields.
"""
