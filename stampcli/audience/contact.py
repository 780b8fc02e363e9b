from stampcli.records import Contact as Contact  # removed at merge: moved to stampcli/records.py
