# Puma's settings for prefork (puma -C puma.rb). Without its reactor (queue_requests false) Puma
# answers every request with "Connection: close", so no kept-alive connection sits idle when
# SIGTERM comes: with it, Puma closes the idle ones at once, and a client sending its next
# request on one at that instant fails (docs/exec-releases.md, "Servers people run").
queue_requests false
threads 16, 16
