// A Go HTTP server run by prefork as an exec release, with the standard library only.
//
// prefork hands it the listen sockets the systemd way (fds 3, 4, ..., LISTEN_FDS, LISTEN_PID)
// and a NOTIFY_SOCKET to send READY=1 on once it serves. On SIGTERM (prefork's default
// stopSignal) it drains without racing kept-alive clients: it stops accepting (the other
// workers, or the next release, accept on the same sockets), answers "Connection: close" for a
// moment so that clients leave after their next response, then Shutdown closes what is left
// idle and waits for requests in flight. (Shutdown alone, or SetKeepAlivesEnabled(false),
// closes idle kept-alive connections at once: a client sending on one at that instant fails.)
//
// -drain=shutdown drains the way most Go services do (Shutdown on SIGTERM), and
// -drain=keepalives-off calls SetKeepAlivesEnabled(false) first: both are here to be measured
// against the default (docs/exec-releases.md, "Servers people run").
//
// Build: go build -o server .   (then "command": ["./server"] in prefork.json)
package main

import (
	"context"
	"encoding/json"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// listeners returns the sockets prefork (or systemd) passed, or nil when there are none.
func listeners() []net.Listener {
	if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) {
		return nil
	}
	n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	var out []net.Listener
	for fd := 3; fd < 3+n; fd++ {
		f := os.NewFile(uintptr(fd), "listen-fd-"+strconv.Itoa(fd))
		l, err := net.FileListener(f)
		if err != nil {
			log.Fatalf("fd %d is not a listening socket: %v", fd, err)
		}
		f.Close()
		out = append(out, l)
	}
	return out
}

// notify sends one sd_notify message ("READY=1", "WATCHDOG=1", "STATUS=...").
func notify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		log.Printf("notify %q: %v", state, err)
		return
	}
	defer conn.Close()
	conn.Write([]byte(state))
}

// watchdog sends WATCHDOG=1 at half the interval prefork asked for (WATCHDOG_USEC), if any.
func watchdog() {
	usec, _ := strconv.Atoi(os.Getenv("WATCHDOG_USEC"))
	if usec <= 0 {
		return
	}
	for range time.Tick(time.Duration(usec) * time.Microsecond / 2) {
		notify("WATCHDOG=1")
	}
}

func main() {
	drain := flag.String("drain", "careful", "on SIGTERM: careful (stop accepting, Connection: close for 1 s, Shutdown), shutdown (Shutdown alone) or keepalives-off (SetKeepAlivesEnabled(false), then Shutdown)")
	flag.Parse()
	if *drain != "careful" && *drain != "shutdown" && *drain != "keepalives-off" {
		log.Fatalf("-drain %q: want careful, shutdown or keepalives-off", *drain)
	}
	log.SetFlags(0)
	dir, _ := os.Getwd()
	release := filepath.Base(dir) // prefork runs each worker in its release directory
	pid := os.Getpid()

	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"release": release, "pid": pid, "lang": "go"})
	})
	var draining, leaving atomic.Bool
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if leaving.Load() {
			w.Header().Set("Connection", "close") // the client leaves after this response
		}
		mux.ServeHTTP(w, r)
	})}

	ls := listeners()
	if len(ls) == 0 {
		log.Fatal("no listen sockets: run me under prefork (or systemd socket activation)")
	}
	var serving sync.WaitGroup
	for _, l := range ls {
		serving.Add(1)
		go func(l net.Listener) {
			defer serving.Done()
			if err := srv.Serve(l); err != http.ErrServerClosed && !draining.Load() {
				log.Fatalf("serve: %v", err)
			}
		}(l)
	}
	notify("READY=1")
	notify("STATUS=serving " + release)
	go watchdog()
	log.Printf("%s serving on %d socket(s)", release, len(ls))

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	notify("STOPPING=1")
	draining.Store(true)
	if *drain == "careful" {
		leaving.Store(true)
		for _, l := range ls {
			l.Close() // stop accepting; the sockets stay open in prefork and the other workers
		}
		time.Sleep(time.Second)
	} else if *drain == "keepalives-off" {
		srv.SetKeepAlivesEnabled(false)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Printf("shutdown: %v", err)
	}
	serving.Wait()
	log.Printf("%s drained", release)
}
