"""Periodic sockets: the scheduler that calls a socket on its interval or cron schedule.

Every agent runs one (:class:`pyfi.scheduler.service.SchedulerThread`); one
of them leads at a time (:mod:`pyfi.scheduler.leader`) and fires. Each
scheduled instant of a socket has one id, derived from the socket and the
instant (:func:`pyfi.scheduler.fires.fire_id`), used as the call's id; the
instant is claimed by a unique row in the transaction that publishes the
call, so a leader change or a crash never fires an instant twice.
"""
