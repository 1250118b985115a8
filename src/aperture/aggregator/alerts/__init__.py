"""Alerts: rules over operational metrics and profiles, evaluated on a schedule."""
