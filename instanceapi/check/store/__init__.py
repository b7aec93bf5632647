"""The host-wide index store: one writer (the refresher), lock-free readers (the workers).

``snapshot`` is the file format, ``writer`` publishes it, ``reader`` maps it,
``state`` is the small per-target state file, ``absent`` the confirmed absences
the workers share. Any doubt about a file reads as "unreadable", never as "not
listed": the caller then falls back to live lookups.
"""
