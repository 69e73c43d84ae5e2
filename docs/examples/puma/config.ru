# A Rack app served by Puma (Debian's puma, 5.6) as a prefork exec release.
#
# `puma --bind-to-activated-sockets only` serves the sockets in LISTEN_FDS, and with Debian's
# ruby-sd-notify installed Puma sends READY=1 on NOTIFY_SOCKET once booted. SIGTERM (prefork's
# default stopSignal) is its graceful stop. puma.rb holds the settings that lose no request.
require 'json'

RELEASE = File.basename(Dir.pwd) # prefork runs each worker in its release directory

run lambda { |env|
  if env['PATH_INFO'] == '/health'
    [200, { 'content-type' => 'text/plain' }, ["ok\n"]]
  else
    [200, { 'content-type' => 'application/json' },
     [JSON.generate(release: RELEASE, pid: Process.pid, lang: 'puma')]]
  end
}
