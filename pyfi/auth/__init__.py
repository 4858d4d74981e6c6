"""Who is acting, and what they may do.

:mod:`pyfi.auth.actor` names the acting identity that every transaction
carries (``session.info``); the rights checks read it from there, so the
object layer needs no extra parameter to know who asks.
"""
