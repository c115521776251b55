# Hostile and careless peers, end to end: headers trickled a byte a
# second, hixie-76 clients that never send their key bytes, a frame
# claiming 2^63-1 bytes, a burst of 1,000 pings, a reader that stops while
# another thread floods it, 200 connections dropped without a close, a
# plugin sending to a connection that is gone, and 20,000 messages written
# without reading.  Each asserts the behaviour (time only as generous
# bounds) and, where memory is at stake, that the httpd children's RSS and
# open descriptors stay bounded (read from /proc: Apache::Test runs httpd
# as the test user).
#
# Locations (t/conf/extra.conf.in, "hardening tests"): /hardening/lifecycle
# and /hardening/flood (WebSocketMaxPendingBytes 256K) use the test plugin
# t/plugins/lifecycle.c; the vhost hardening_trickle has
# RequestReadTimeout header=2-4,MinRate=1.
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use POSIX ();
use Time::HiRes ();
use WSTest qw(:all);

plan tests => 48;

my $MB = 1024;                      # VmRSS is in kB
my $RSS_SLACK = 20 * $MB;
my $FD_SLACK = 10;
my $start_mark = error_log_mark();

# ---------------------------------------------------------------------

sub open_ws {
    my %o = @_;
    my $c = WSTest->open6455(%o);
    BAIL_OUT("cannot open a WebSocket: $@") unless $c;
    return $c;
}

# true when $c echoes $text (one text message)
sub echoes {
    my ($c, $text, $timeout) = @_;
    $c->send(ws_text($text)) or return 0;
    my $m = $c->read_ws_message($timeout // 5) or return 0;
    return $m->{opcode} == OP_TEXT && $m->{payload} eq $text;
}

# a fresh client on $path (default /echo) completes a handshake and an echo
sub served {
    my %o = @_;
    my $c = WSTest->open6455(path => '/echo', %o) or return 0;
    my $ok = echoes($c, 'are you there?');
    $c->send(ws_close(1000));
    return $ok;
}

sub busy_workers {
    my $c = WSTest->connect or return;
    $c->send("GET /server-status?auto HTTP/1.1\r\nHost: "
             . $c->hostport . "\r\nConnection: close\r\n\r\n");
    my $all = $c->read_available(5);
    return $all =~ /^BusyWorkers:\s*(\d+)/m ? $1 : undef;
}

# ---------------------------------------------------------------------
# 1. request headers trickled one byte a second: mod_reqtimeout
# (header=2-4,MinRate=1 on the hardening_trickle vhost) drops them within
# its 4 s limit; the workers come back and other clients are served
# meanwhile (4 tests)
{
    my $busy0 = busy_workers();
    my ($h, $p) = server_hostport('hardening_trickle');
    my $req = rfc6455_request(host => "$h:$p", path => '/echo');
    my @t = map { WSTest->connect(vhost => 'hardening_trickle') } 1 .. 3;
    my $t0 = Time::HiRes::time();
    my (%closed_at, $served_meanwhile, $open_meanwhile, $busy_during);
    for (my $i = 0; $i < length $req && keys %closed_at < @t; $i++) {
        last if Time::HiRes::time() - $t0 > 15;
        for my $k (0 .. $#t) {
            next if $closed_at{$k};
            $t[$k]->send(substr $req, $i, 1);
        }
        if ($i == 1) {
            $served_meanwhile = served(vhost => 'hardening_trickle');
            $busy_during = busy_workers();
            # observed, not assumed: the tricklers were still connected
            $_->read_available(0.05) for @t;
            $open_meanwhile = !grep { $_->eof } @t;
        }
        my $tick = Time::HiRes::time();
        while ((my $left = $tick + 1 - Time::HiRes::time()) > 0) {
            for my $k (0 .. $#t) {
                next if $closed_at{$k};
                $t[$k]->read_available(0.02);
                $closed_at{$k} = Time::HiRes::time() - $t0 if $t[$k]->eof;
            }
            Time::HiRes::sleep(0.05);
        }
    }
    my @at = map { $closed_at{$_} } 0 .. $#t;
    ok !(grep { !defined $_ || $_ < 1.5 || $_ > 10 } @at),
       'the tricklers are dropped after 2-4 s (between 1.5 and 10 s)'
        or diag 'closed after: ' . join ', ',
                map { defined $_ ? sprintf('%.1fs', $_) : 'never' } @at;
    ok $served_meanwhile && $open_meanwhile,
       'another client on that vhost is served while they are connected'
        or diag sprintf 'served: %s, tricklers still connected: %s',
                        map { $_ ? 'yes' : 'no' } $served_meanwhile,
                                                  $open_meanwhile;
    my $busy1 = busy_workers();
    note sprintf 'BusyWorkers: %s before, %s while trickling, %s after',
        map { $_ // '?' } $busy0, $busy_during, $busy1;
    ok defined $busy0 && defined $busy1 && $busy1 <= $busy0,
       'their workers are released (BusyWorkers back to the baseline)'
        or diag sprintf 'BusyWorkers before %s, after %s',
                        $busy0 // '?', $busy1 // '?';
    ok served(), 'and the main server still serves';
}

# ---------------------------------------------------------------------
# 2. several hixie-76 clients that never send their 8 key bytes
# (/short-timeout: WebSocketHandshakeTimeout 2) do not hold up a normal
# client: once the server has read their requests (ForensicLog), a
# normal client is served before any of them has ended; each is closed
# after its timeout (5 tests)
{
    my ($h, $p) = server_hostport();
    my (@w, @tags);
    for my $i (1 .. 5) {
        my $c = WSTest->connect;
        push @tags, "no-key3-$$-$i";
        $c->send(scalar hixie76_request(host => "$h:$p", path => '/short-timeout',
                                        key3 => undef,
                                        extra => [['X-Test-Tag', $tags[-1]]]));
        push @w, $c;
    }
    my $t0 = Time::HiRes::time();
    my @ids = forensic_read(@tags);
    is scalar(@ids), 5, 'the server has read the 5 requests (ForensicLog)';
    my $ok = served();
    my $ended = forensic_ended(@ids);
    ok $ok, 'a normal client is served while 5 hixie-76 clients wait';
    is $ended, 0, 'before any of their requests has ended';
    my $closed = grep { $_->wait_eof(10) } @w;
    my $elapsed = Time::HiRes::time() - $t0;
    is $closed, 5, 'all 5 are closed by the server';
    cmp_ok $elapsed, '<=', 10, 'within a few seconds of the timeout'
        or diag sprintf 'after %.1fs', $elapsed;
}

# ---------------------------------------------------------------------
# 3. a frame header claiming 2^63-1 bytes: close 1009 (over the 16M
# default), and nothing is allocated for it (5 tests)
{
    my $before = snapshot();
    my $c = open_ws(path => '/echo');
    my $key = "\x11\x22\x33\x44";
    my $hdr = "\x81\xFF" . pack('NN', 0x7FFFFFFF, 0xFFFFFFFF) . $key;
    ok $c->send($hdr . ws_mask('x' x 4096, $key)),
       'sent a text frame header claiming 2^63-1 bytes';
    my ($close, $frames) = $c->read_until_close(5);
    my $info = ws_close_frame_info($close);
    is $info && $info->{code}, 1009, 'answered with close 1009'
        or diag hexdump(join('', map { $_->{raw} } @$frames) . $c->buffered);
    is scalar(@$frames), 0, 'nothing before the close';
    ok $c->wait_eof(5), 'then the server closes TCP';
    my $after = snapshot();
    my $g = rss_growth($before, $after);
    cmp_ok $g, '<', $RSS_SLACK, 'no httpd child grew by 20 MB or more'
        or diag "grew $g kB\nbefore: " . describe($before)
              . "\nafter: " . describe($after);
}

# ---------------------------------------------------------------------
# 4. 1,000 pings in one write: 1,000 pongs, same payloads, same order,
# and the connection still works (3 tests)
{
    my $c = open_ws(path => '/echo');
    my @pay = map { sprintf 'ping %04d', $_ } 0 .. 999;
    ok $c->send(join '', map { ws_ping($_) } @pay), '1,000 pings in one write';
    my @got;
    while (@got < @pay) {
        my $f = $c->read_ws_frame(20) or last;
        push @got, $f;
        last if $f->{opcode} != OP_PONG;
    }
    my @bad = grep { $got[$_]{opcode} != OP_PONG || $got[$_]{payload} ne $pay[$_] }
              0 .. $#got;
    ok @got == @pay && !@bad, '1,000 pongs with the pings\' payloads, in order'
        or diag sprintf '%d frames; first wrong: %s', scalar @got,
                @bad ? "#$bad[0] " . hexdump($got[$bad[0]]{raw}) : 'none';
    ok echoes($c, 'after the pings'), 'the connection still echoes';
    $c->send(ws_close(1000));
}

# ---------------------------------------------------------------------
# 5. a reader that stops while another thread floods it ("flood-me N":
# the lifecycle plugin sends N x 1 KiB from a thread of its own, pacing
# itself on server->pending() until nothing has drained for 1 s, then as
# fast as it can) on /hardening/flood (WebSocketMaxPendingBytes 256K).
# A client that reads gets the whole flood; one that stops reading is cut:
# the plugin's sends fail once 256K are queued, httpd's memory stays
# bounded, another client keeps getting echoes, and the stalled client,
# once it reads, gets a prefix of the stream and close 1008 (or the
# connection ends) (11 tests)
{
    my $mark = error_log_mark();
    my $r = open_ws(path => '/hardening/flood');
    my $id = $r->sock->sockport;
    $r->send(ws_text('flood-me 3000'));
    my ($n, $bad) = (0, undef);
    while ($n < 3000) {
        my $f = $r->read_ws_frame(20) or last;
        $bad //= $n unless $f->{opcode} == OP_TEXT && $f->{length} == 1024
                           && $f->{payload} =~ /^$n:f/;
        $n++;
    }
    ok $n == 3000 && !defined $bad,
       'a client that reads gets all 3,000 messages of a paced flood'
        or diag "got $n, first wrong: " . ($bad // 'none');
    my ($line) = error_log_wait($mark, qr/lifecycle: flood $id:/,
                                timeout => 10);
    like $line // '', qr/sent 3000 of 3000: status 0 /,
         'and the plugin\'s sends all succeeded';
    $r->send(ws_close(1000));
    $r->read_until_close(5);
}
{
    my $mark = error_log_mark();
    my $before = snapshot();
    my $s = open_ws(path => '/hardening/flood');
    my $id = $s->sock->sockport;
    ok $s->send(ws_text('flood-me 100000')), 'asked for a flood, not reading';

    my $e = open_ws(path => '/echo');
    my $echoed = grep { echoes($e, "echo $_") } 1 .. 20;
    is $echoed, 20, 'another client gets its echoes meanwhile';

    my ($line) = error_log_wait($mark, qr/lifecycle: flood $id:/,
                                timeout => 20);
    my ($sent) = ($line // '') =~ /sent (\d+) of 100000/;
    ok defined $sent && $sent < 100000,
       'the flooding thread\'s sends fail before it is done'
        or diag $line // 'no "lifecycle: flood" line';
    like $line // '', qr/APR_ECONNABORTED/, 'with APR_ECONNABORTED';
    # what was queued when the first send failed: WebSocketMaxPendingBytes
    # less at most one message (the plugin reads pending() just before),
    # plus the frame headers (4 bytes a message) of what the loop has
    # already framed but not written (at most 256 messages)
    my ($pending) = map { /: (\d+) bytes pending before the failed send/ }
        error_log_wait($mark, qr/lifecycle: flood $id: \d+ bytes pending/,
                       timeout => 5, settle => 0);
    ok defined $pending && $pending > 256 * 1024 - 1024
       && $pending <= 256 * 1024 + 256 * 4,
       'the queue held WebSocketMaxPendingBytes (256K) when it refused'
        or diag 'pending: ' . ($pending // 'not logged');

    my $after = snapshot();
    my $g = rss_growth($before, $after);
    cmp_ok $g, '<', $RSS_SLACK,
       'no httpd child grew by 20 MB (100 MB were offered)'
        or diag "grew $g kB\nbefore: " . describe($before)
              . "\nafter: " . describe($after);
    ok echoes($e, 'still there'), 'the other client still gets echoes';
    $e->send(ws_close(1000));

    my ($close, $frames) = $s->read_until_close(30);
    my $info = ws_close_frame_info($close);
    ok(($info && $info->{code} == 1008) || (!$close && $s->eof),
       'the stalled client is closed with 1008 (or reset)')
        or diag sprintf '%d frames, close %s, eof %d', scalar @$frames,
                $info ? $info->{code} // 'none' : 'none', $s->eof;
    my @data = grep { $_->{opcode} == OP_TEXT } @$frames;
    my $data = @data;
    my @wrong = grep { $data[$_]{payload} !~ /^$_:f/ } 0 .. $#data;
    ok $data < 100000 && !@wrong,
       "it got a prefix of the stream, in order ($data messages)"
        or diag "first out of order: #$wrong[0]";
    note "the plugin had sent $sent messages when its sends began to fail";
    $s->close;
    error_log_wait($mark, qr/lifecycle: on_disconnect $id$/, timeout => 10);
}

# ---------------------------------------------------------------------
# 6. 200 connections opened, upgraded, then dropped without a close frame:
# on_disconnect for each, and the children's open descriptors and RSS go
# back to near the baseline (5 tests)
{
    my $mark = error_log_mark();
    my $before = snapshot();
    my (@c, %ids);
    for (1 .. 200) {
        my $c = WSTest->connect or last;
        $ids{ $c->sock->sockport } = 1;
        $c->send(scalar rfc6455_request(host => $c->hostport,
                                        path => '/hardening/lifecycle'));
        push @c, $c;
    }
    my $up = 0;
    for my $c (@c) {
        my $res = parse_head($c->read_head(30));
        $up++ if $res && $res->{status} == 101;
    }
    is $up, 200, '200 connections upgraded';
    my $during = snapshot();
    my $fd_during = 0;
    $fd_during += $_->{fd} for values %$during;
    $_->close for @c;
    @c = ();
    my @gone = grep { /on_disconnect (\d+)$/ && $ids{$1} }
               error_log_wait($mark, qr/lifecycle: on_disconnect/, min => 200,
                              timeout => 20);
    is scalar(@gone), 200, 'dropped without a close: on_disconnect for each';

    my ($after, $fdg, $rssg);
    my $deadline = Time::HiRes::time() + 5;
    while (1) {
        $after = snapshot();
        ($fdg, $rssg) = (fd_growth($before, $after), rss_growth($before, $after));
        last if ($fdg <= $FD_SLACK && $rssg < $RSS_SLACK)
             || Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.25);
    }
    cmp_ok $fd_during, '>=', 200, 'the children held the sockets meanwhile'
        or diag describe($during);
    cmp_ok $fdg, '<=', $FD_SLACK, 'open descriptors back to the baseline (+10)'
        or diag "before: " . describe($before) . "\nafter: " . describe($after);
    cmp_ok $rssg, '<', $RSS_SLACK, 'RSS back near the baseline (+20 MB)'
        or diag "before: " . describe($before) . "\nafter: " . describe($after);
}

# ---------------------------------------------------------------------
# 7. a plugin sending to a connection that is already gone: the
# lifecycle plugin's thread waits for on_disconnect, then sends:
# APR_ECONNABORTED, no crash (6 tests)
{
    my $mark = error_log_mark();
    my $c = open_ws(path => '/hardening/lifecycle');
    my $id = $c->sock->sockport;
    ok $c->send(ws_text('send-after-gone')), 'asked for a send after the end';
    ok echoes($c, 'hello'), 'the connection echoes meanwhile';
    $c->send(ws_close(1000, 'bye'));
    my ($close) = $c->read_until_close(5);
    my $info = ws_close_frame_info($close);
    is $info && $info->{code}, 1000, 'closing handshake completed';
    $c->close;
    my @l = error_log_wait($mark, qr/lifecycle: send-after-gone $id:/,
                           timeout => 10);
    like $l[0] // '', qr/APR_ECONNABORTED/,
         'the late send returned APR_ECONNABORTED'
        or diag join "\n", error_log_since($mark);
    my @order = error_log_since($mark,
        qr/lifecycle: (?:on_close 1000 \(id $id\)|on_disconnect $id$|send-after-gone $id:)/);
    s/.*lifecycle: (\S+).*/$1/ for @order;
    is "@order", 'on_close on_disconnect send-after-gone',
       'logged in order: on_close, on_disconnect, the late send';
    ok served(path => '/hardening/lifecycle'), 'the server carries on';
}

# ---------------------------------------------------------------------
# 7b. server->subprotocol() from a plugin thread after the request has
# ended: the lifecycle plugin picks the first subprotocol offered; its
# thread waits until the connection's pool has been cleaned up (the
# upgrade request's pool is gone by then) and logs what subprotocol()
# says.  With MaxMemFree 1 in the test configuration a pool's memory goes
# back to the system when the pool is destroyed, so reading the request's
# pool afterwards crashes the child (Debian's APR maps that memory; with
# malloc, ASan reports it under "make test SANITIZE=1") (4 tests)
{
    my $mark = error_log_mark();
    my $c = open_ws(path => '/hardening/lifecycle',
                    protocol => 'lifecycle.test, other');
    my $id = $c->sock->sockport;
    is header($c->{handshake}{res}, 'Sec-WebSocket-Protocol'),
       'lifecycle.test', 'the plugin chose the first subprotocol offered';
    ok $c->send(ws_text('subprotocol-after-gone')),
       'asked for subprotocol() after the end';
    $c->send(ws_close(1000));
    my ($close) = $c->read_until_close(5);
    ok $close && $c->wait_eof(5), 'the connection ended';
    $c->close;
    my ($line) = error_log_wait($mark,
        qr/lifecycle: subprotocol-after-gone $id:/, timeout => 10,
        settle => 0);
    is +($line // '') =~ /: '(.*)'$/ ? $1 : undef, 'lifecycle.test',
       'subprotocol() still names it once the request is gone'
        or diag $line // join "\n", 'no line; new lines:',
                                 error_log_since($mark);
}

# ---------------------------------------------------------------------
# 8. 20,000 small messages written faster than they are echoed (a
# writer process sends them all while the reader waits 2 s), then read:
# every echo arrives, in order, with memory bounded (4 tests)
{
    my $before = snapshot();
    my $c = open_ws(path => '/echo');
    my @msgs = map { sprintf "message %05d %s", $_, 'z' x 50 } 0 .. 19_999;
    my $all = join '', map { ws_text($_) } @msgs;
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        my $ok = $c->send($all);
        POSIX::_exit($ok ? 0 : 1);
    }
    Time::HiRes::sleep(2);
    my ($n, $first_bad) = (0, undef);
    while ($n < @msgs) {
        my $f = $c->read_ws_frame(30) or last;
        if (!defined $first_bad
            && ($f->{opcode} != OP_TEXT || $f->{payload} ne $msgs[$n])) {
            $first_bad = $n;
        }
        $n++;
    }
    waitpid $pid, 0;
    is $?, 0, 'the writer wrote all 20,000 messages';
    ok $n == @msgs && !defined $first_bad, 'all 20,000 echoes, in order'
        or diag "got $n; first wrong: " . ($first_bad // 'none');
    $c->send(ws_text('and one more'));
    my $m = $c->read_ws_message(10);
    ok $m && $m->{opcode} == OP_TEXT && $m->{payload} eq 'and one more',
       'the connection still works'
        or diag $m ? "got opcode $m->{opcode}: " . hexdump($m->{payload}, 64)
                   : 'got nothing' . ($c->eof ? ' (EOF)' : '');
    $c->send(ws_close(1000));
    my $g = rss_growth($before, snapshot());
    cmp_ok $g, '<', $RSS_SLACK, 'no httpd child grew by 20 MB or more'
        or diag "grew $g kB";
}

# ---------------------------------------------------------------------
# no child crashed along the way (1 test)
{
    my @crash = crash_lines($start_mark);
    is scalar(@crash), 0, 'no httpd child crashed'
        or diag join "\n", @crash;
}
