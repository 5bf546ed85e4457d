# Goes in place of attach_to_replication_stream_on_connection in the suite's
# tests/test_helper.tcl (scripts/redis_conformance.py puts it there when it runs the suite).
# The suite's own version sends SYNC on a raw socket and waits without limit for the RDB,
# looping forever if the connection closes. Redis answers at once; through a proxy that
# drops SYNC, closes the connection or withholds the RDB, every test using it (a dozen in
# unit/multi) would hang. This one gives up after 10 s and fails the test instead.
proc attach_to_replication_stream_on_connection {conn} {
    r config set repl-ping-replica-period 3600
    if {$::tls} {
        set s [::tls::socket [srv $conn "host"] [srv $conn "port"]]
    } else {
        set s [socket [srv $conn "host"] [srv $conn "port"]]
    }
    fconfigure $s -translation binary
    puts -nonewline $s "SYNC\r\n"
    flush $s

    # Get the count
    set deadline [expr {[clock milliseconds] + 10000}]
    fconfigure $s -blocking 0
    while 1 {
        set count [gets $s]
        if {[eof $s]} {close $s; error "attach_to_replication_stream: connection closed"}
        set prefix [string range $count 0 0]
        if {$prefix ne {}} break; # Newlines are allowed as PINGs.
        if {[clock milliseconds] > $deadline} {
            close $s
            error "attach_to_replication_stream: no reply to SYNC within 10 s"
        }
        after 10
    }
    fconfigure $s -blocking 1
    if {$prefix ne {$}} {
        error "attach_to_replication_stream error. Received '$count' as count."
    }
    set count [string range $count 1 end]

    # Consume the bulk payload
    while {$count} {
        set buf [read $s $count]
        if {[eof $s]} {close $s; error "attach_to_replication_stream: connection closed in the RDB"}
        set count [expr {$count-[string length $buf]}]
    }
    return $s
}
