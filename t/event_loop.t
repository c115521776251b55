# The event-driven core (issue 10) on the test server's mpm_event: open
# WebSockets are owned by a few loop threads per child
# (WebSocketLoopThreads 2), not by worker threads (ThreadsPerChild 10,
# MaxRequestWorkers 40).
#
# 1. 2,000 WebSockets open at once (one worker thread each could never
#    hold more than 40), a plain GET answered meanwhile, the children
#    running far fewer threads than connections; each echoes, each closes
#    cleanly.
# 2. One loop thread serves hixie-76, RFC 6455 and wss:// connections at
#    once (the lifecycle plugin's "loopid" names the thread), and they all
#    still echo.
# 3. A client that stops reading while 16 MB are queued for it does not
#    hold up the other connections of its loop: their round trips keep
#    working; later it gets all 16 MB, in order.
# 4. Plugin timers and watches on an idle connection: "timer 300" sends
#    "timer fired" (not before 300 ms), "every 100" sends tick 1..3 and
#    stops, timers of both kinds together, "watch" and "watch socket"
#    fire.
# 5. server->post from a foreign thread: "posted from <tid>" then "sent
#    from thread", the posted function running on the connection's loop
#    thread, which is not the posting thread.
#
# Timing only as generous bounds.  The retirement of a surplus child:
# t/event_retire.t; the prefork fallback: t/prefork.t.
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use Time::HiRes ();
use WSTest qw(:all);

plan tests => 8 + 6 + 6 + 11 + 6;

my $LC = '/hardening/lifecycle';
my $FLOOD = '/event-loop/flood';

sub now { Time::HiRes::time() }

# the loop thread of an RFC 6455 / hixie-76 connection to the lifecycle
# plugin (its "loopid" command), or undef
sub loop_of {
    my ($c, $hixie) = @_;
    my $p = $hixie ? $c->hixie_echo('loopid', 5) : $c->roundtrip('loopid', 5);
    return defined $p && $p =~ /^loop (\d+)$/ ? $1 : undef;
}

# "text x 3, other x 1" from a list of texts
sub tally {
    my %n;
    $n{$_}++ for @_;
    return join '; ', map { "$_ x $n{$_}" } sort { $n{$b} <=> $n{$a} } keys %n;
}

# ---------------------------------------------------------------------
# 1. 2,000 WebSockets at once (8 tests)
{
    my $N = 2000;
    my ($soft, $hard) = nofile_limits();
    $soft = raise_nofile($N + 200);
    # The children may get the connections unevenly: each (and the
    # parent, for children it starts later) may need room for all.
    my $pp = httpd_parent_pid();
    for my $pid (grep { defined } $pp, children()) {
        my ($s) = nofile_limits($pid);
        raise_nofile($N + 500, $pid) if defined $s && $s < $N + 500;
    }
    my @short = grep { my ($s) = nofile_limits($_); defined $s && $s < $N + 100 }
                grep { defined } $pp, children();

    SKIP: {
        skip "ulimit -n: this process may open $soft files (hard limit "
             . ($hard // '?') . "), $N WebSockets need more", 8
            if $soft < $N + 50;
        diag 'httpd processes with fewer than ' . ($N + 100)
             . " descriptors allowed: @short" if @short;

        my $t0 = now();
        my ($conns, $errors) = WSTest->open_many($N, path => '/echo',
                                                 timeout => 120);
        is scalar(@$conns), $N, "$N WebSockets open at once"
            or diag sprintf "after %.1f s; failures: %s", now() - $t0,
                            tally(@$errors);
        note sprintf '%d handshakes in %.1f s', scalar @$conns, now() - $t0;

        # plain HTTP meanwhile
        my $h = WSTest->connect;
        my $hp = $h ? $h->hostport : '';
        $h && $h->send("GET /index.html HTTP/1.1\r\nHost: $hp\r\n"
                       . "Connection: close\r\n\r\n");
        my $head = $h ? $h->read_head(10) : undef;
        my $res = parse_head($head);
        is $res && $res->{status}, 200,
           'a plain GET /index.html is answered 200 meanwhile'
            or diag hexdump($head // ($h ? $h->buffered : "connect: $@"));
        $h->close if $h;

        # no thread per connection
        my @kids = children();
        my $threads = 0;
        $threads += thread_count($_) // 0 for @kids;
        ok @$conns == $N && $threads > 0 && $threads < 500,
           "the server's children hold them with $threads threads in all"
            or diag scalar(@kids) . " children: @kids";
        note scalar(@kids) . " children, $threads threads";

        # every one echoes: all messages out first, then all answers
        my $sent = 0;
        for my $i (0 .. $#$conns) {
            $sent++ if $conns->[$i]->send(ws_text("message $i of $N"));
        }
        my $deadline = now() + 60;
        my ($echoed, @bad) = (0);
        for my $i (0 .. $#$conns) {
            my $left = $deadline - now();
            my $m = $conns->[$i]->read_ws_message($left > 0.2 ? $left : 0.2);
            if ($m && $m->{opcode} == OP_TEXT
                && $m->{payload} eq "message $i of $N") {
                $echoed++;
            }
            else {
                push @bad, $m ? 'opcode ' . $m->{opcode} . ': '
                                . hexdump($m->{payload}, 40)
                              : $conns->[$i]->eof ? 'EOF' : 'nothing';
            }
        }
        is $sent, scalar @$conns, 'a message sent on each';
        is $echoed, scalar @$conns, 'each echoes its own message'
            or diag 'failures: ' . tally(@bad);

        # all close cleanly
        $_->send(ws_close(1000, 'bye')) for @$conns;
        $deadline = now() + 60;
        my ($closed, $eof, @why) = (0, 0);
        for my $c (@$conns) {
            my $left = $deadline - now();
            my ($f) = $c->read_until_close($left > 0.2 ? $left : 0.2);
            my $info = ws_close_frame_info($f);
            if ($info && ($info->{code} // 0) == 1000) {
                $closed++;
            }
            else {
                push @why, $info ? 'close ' . ($info->{code} // 'empty')
                                 : $c->eof ? 'EOF' : 'nothing';
            }
        }
        for my $c (@$conns) {
            my $left = $deadline - now();
            $eof++ if $c->wait_eof($left > 0.2 ? $left : 0.2);
        }
        is $closed, scalar @$conns, 'each answers the close with 1000'
            or diag 'failures: ' . tally(@why);
        is $eof, scalar @$conns, 'then the server closes each TCP connection';
        $_->close for @$conns;

        # and the server is still fine
        my $c = WSTest->open6455(path => '/echo');
        is $c && $c->roundtrip('after 2000', 5), 'after 2000',
           'a new WebSocket echoes afterwards';
    }
}

# ---------------------------------------------------------------------
# 2. hixie-76, RFC 6455 and wss:// on one loop thread (6 tests)
SKIP: {
    skip 'mod_ssl is not loaded', 6 unless Apache::Test::have_module('ssl');
    my %loops;     # tid => { rfc => [...], hixie => [...], wss => [...] }
    my (@all, $shared, @trouble);
    for my $round (1 .. 40) {
        my %new;
        $new{rfc} = WSTest->open6455(path => $LC)
            or push @trouble, "RFC 6455: $@";
        $new{wss} = WSTest->open6455(ssl => 1, path => $LC)
            or push @trouble, "wss: $@";
        my $h = WSTest->connect;
        my $r = $h && $h->handshake76(path => $LC);
        if ($r && $r->{res} && $r->{res}{status} == 101
            && defined $r->{answer} && $r->{answer} eq $r->{expected}) {
            $new{hixie} = $h;
        }
        else {
            push @trouble, 'hixie-76: '
                . hexdump($r ? $r->{head} // $h->buffered : $@);
        }
        for my $kind (sort keys %new) {
            my $c = $new{$kind} or next;
            my $tid = loop_of($c, $kind eq 'hixie');
            unless (defined $tid) {
                push @trouble, "$kind: no answer to loopid";
                next;
            }
            push @{ $loops{$tid}{$kind} }, $c;
            push @all, [$kind, $c, $tid];
        }
        last if @trouble;
        ($shared) = grep { my $l = $loops{$_};
                           $l->{rfc} && $l->{hixie} && $l->{wss} }
                    sort keys %loops;
        last if defined $shared;
    }
    is "@trouble", '', 'connections of each kind open and answer loopid';
    ok defined $shared,
       'one loop thread serves hixie-76, RFC 6455 and wss:// connections'
        or diag join "\n", map { my $l = $loops{$_};
                                 "loop $_: " . join ', ', map {
                                     "$_ x " . scalar @{ $l->{$_} }
                                 } sort keys %$l } sort keys %loops;
    my $pid = defined $shared ? tid_pid($shared) : undef;
    ok defined $pid && grep({ $_ == $pid } children()),
       'loop thread ' . ($shared // '(none)')
       . ' runs in a child of the test server (pid ' . ($pid // 'none') . ')';
    note scalar(@all) . ' connections on ' . scalar(keys %loops)
         . ' loop threads';

    # everyone echoes, the shared loop's connections all at once first
    my @on = grep { defined $shared && $_->[2] eq $shared } @all;
    my @rest = grep { !defined $shared || $_->[2] ne $shared } @all;
    my (%want, @got);
    for my $i (0 .. $#on) {
        my ($kind, $c) = @{ $on[$i] };
        my $text = "$kind $i on the shared loop \xc3\xa9\xe2\x82\xac";
        $want{$i} = $text;
        $c->send($kind eq 'hixie' ? hixie_text_frame($text) : ws_text($text));
    }
    my $ok = 0;
    for my $i (0 .. $#on) {
        my ($kind, $c) = @{ $on[$i] };
        my $got;
        if ($kind eq 'hixie') {
            my $f = $c->read_hixie_frame(5);
            $got = $f && $f->{data};
        }
        else {
            my $m = $c->read_ws_message(5);
            $got = $m && $m->{payload};
        }
        if (defined $got && $got eq $want{$i}) { $ok++ }
        else { push @got, "$kind $i: " . hexdump($got) }
    }
    ok @on >= 3 && $ok == @on,
       'all ' . scalar(@on) . ' connections of the shared loop echo, '
       . 'messages sent to all of them at once'
        or diag join "\n", @got;
    my $ok2 = 0;
    for my $e (@rest) {
        my ($kind, $c) = @$e;
        my $got = $kind eq 'hixie' ? $c->hixie_echo("$kind elsewhere", 5)
                                   : $c->roundtrip("$kind elsewhere", 5);
        $ok2++ if defined $got && $got eq "$kind elsewhere";
    }
    is $ok2, scalar @rest, 'and so do the ' . scalar(@rest) . ' others';

    # closing handshakes
    my $closed = 0;
    for my $e (@all) {
        my ($kind, $c) = @$e;
        if ($kind eq 'hixie') {
            $c->send(hixie_close_frame());
            my $b = $c->read_bytes(2, 5);
            $closed++ if $b eq "\xFF\x00" && $c->wait_eof(5);
        }
        else {
            $c->send(ws_close(1000));
            my ($f) = $c->read_until_close(5);
            my $info = ws_close_frame_info($f);
            $closed++ if $info && ($info->{code} // 0) == 1000
                         && $c->wait_eof(5);
        }
    }
    is $closed, scalar @all, 'all close cleanly';
}

# ---------------------------------------------------------------------
# 3. a client that stops reading (6 tests)
{
    my $FLOOD_N = 16384;              # 1 KiB messages: 16 MB
    my (%groups, @conns);
    for my $i (1 .. 24) {
        my $c = WSTest->open6455(path => $FLOOD) or last;
        push @conns, $c;
        my $tid = loop_of($c);
        push @{ $groups{$tid} }, $c if defined $tid;
    }
    my ($tid) = sort { @{ $groups{$b} } <=> @{ $groups{$a} } || $a <=> $b }
                keys %groups;
    my @g = defined $tid ? @{ $groups{$tid} } : ();
    ok @g >= 3, 'three or more connections share loop thread '
                . ($tid // '(none)')
        or diag scalar(@conns) . ' connections on loops: '
                . join ', ', map { "$_ x " . scalar @{ $groups{$_} } }
                             keys %groups;
    my ($stalled, @peers) = @g;

    SKIP: {
        skip 'no loop with three connections', 5 unless @g >= 3;
        my $id = $stalled->sock->sockport;
        my $mark = error_log_mark();
        $stalled->send(ws_text("flood-me $FLOOD_N"));
        # The plugin's thread paces itself while 128K or more wait, until
        # nothing has drained for 1 s: then it queues the rest at once.
        # So its log line says the reader stalled with megabytes queued.
        my ($line) = error_log_wait($mark, qr/lifecycle: flood $id: sent/,
                                    timeout => 30, settle => 0);
        like $line // '', qr/sent $FLOOD_N of $FLOOD_N: status 0 /,
             'the silent client stalls: all 16 MB queued for it';

        # the loop keeps serving the others
        my ($trips, @slow) = (0);
        my $until = now() + 3;
        my $round = 0;
        while (now() < $until || !$round) {
            $round++;
            for my $i (0 .. $#peers) {
                my $t = now();
                my $text = "peer $i round $round";
                my $got = $peers[$i]->roundtrip($text, 5);
                if (defined $got && $got eq $text) { $trips++ }
                else {
                    push @slow, sprintf '%s: %s after %.1f s', $text,
                        hexdump($got), now() - $t;
                }
            }
        }
        ok $trips >= @peers && !@slow,
           "meanwhile $trips round trips on the " . scalar(@peers)
           . ' other connections of its loop each echo within 5 s'
            or diag join "\n", @slow[0 .. ($#slow < 9 ? $#slow : 9)];
        my $c = WSTest->open6455(path => $FLOOD);
        is $c && $c->roundtrip('a newcomer', 5), 'a newcomer',
           'a new WebSocket echoes meanwhile';

        # the stalled client reads everything, in order
        my ($n, @wrong) = (0);
        my $deadline = now() + 60;
        while ($n < $FLOOD_N) {
            my $m = $stalled->read_ws_message($deadline - now());
            last unless $m;
            if ($m->{opcode} != OP_TEXT || length $m->{payload} != 1024
                || $m->{payload} !~ /^$n:f/) {
                push @wrong, "message $n: " . hexdump($m->{payload}, 20);
                last;
            }
            $n++;
        }
        is $n, $FLOOD_N, 'once it reads, it gets all 16,384 messages';
        is "@wrong", '', 'in order, intact';
        $stalled->send(ws_close(1000));
    }
    for my $c (@conns) {
        $c->send(ws_close(1000));
        $c->close;
    }
}

# ---------------------------------------------------------------------
# 4. timers and watches on an idle connection (11 tests)
{
    my $c = WSTest->open6455(path => $LC);
    ok $c, 'lifecycle connection' or diag $@;
    $c ||= WSTest->connect;        # a dead end: the tests below fail
    my $t = now();
    $c->send(ws_text('timer 300'));
    my $m = $c->read_ws_message(10);
    my $dt = now() - $t;
    is $m && $m->{payload}, 'timer fired',
       'a 300 ms timer fires on a connection that sends nothing more';
    ok $m && $dt >= 0.29 && $dt < 10, 'not before its 300 ms, within 10 s'
        or diag sprintf 'after %.3f s', $dt;

    $c->send(ws_text('every 100'));
    my @ticks = map { my $x = $c->read_ws_message(10); $x && $x->{payload} }
                1 .. 3;
    is_deeply \@ticks, ['tick 1', 'tick 2', 'tick 3'],
              'a repeating 100 ms timer: tick 1, tick 2, tick 3';
    my $more = $c->read_ws_message(0.6);
    ok !$more && !$c->eof, 'then nothing: it cancelled itself'
        or diag hexdump($more && $more->{payload});

    # two timers at once, the later one set first
    $c->send(ws_text('timer 400') . ws_text('timer 100')
             . ws_text('every 50'));
    my @got = map { my $x = $c->read_ws_message(10); $x && $x->{payload} }
              1 .. 5;
    is_deeply [grep { defined && /^timer/ } @got],
              ['timer fired', 'timer fired'],
              'two one-shot timers and a repeating one on one connection'
        or diag join ', ', map { $_ // 'nothing' } @got;
    is_deeply [grep { defined && /^tick/ } @got], ['tick 1', 'tick 2', 'tick 3'],
              '... the ticks in order';
    $more = $c->read_ws_message(0.6);
    ok !$more && !$c->eof, '... and nothing more'
        or diag hexdump($more && $more->{payload});

    $c->send(ws_text('watch'));
    $m = $c->read_ws_message(10);
    is $m && $m->{payload}, 'watch fired', 'a pipe watch fires';
    $c->send(ws_text('watch socket'));
    $m = $c->read_ws_message(10);
    is $m && $m->{payload}, 'watch fired', 'a socket watch fires';
    is $c->roundtrip('still here', 5), 'still here',
       'the connection echoes afterwards';
    $c->send(ws_close(1000));
}

# ---------------------------------------------------------------------
# 5. a post from a foreign thread (6 tests)
{
    my $c = WSTest->open6455(path => $LC) || WSTest->connect;
    my $id = $c->sock->sockport;
    my $loop = loop_of($c);
    ok defined $loop, 'the connection\'s loop thread: ' . ($loop // 'none');
    my $mark = error_log_mark();
    $c->send(ws_text('post'));
    my ($m1, $m2) = map { my $x = $c->read_ws_message(10); $x && $x->{payload} }
                    1 .. 2;
    like $m1 // '', qr/^posted from \d+$/, 'first "posted from <tid>"';
    is $m2, 'sent from thread', 'then "sent from thread"';
    my ($from) = ($m1 // '') =~ /(\d+)$/;
    ok defined $from && defined $loop && $from ne $loop,
       'posted from thread ' . ($from // '(none)') . ', not the loop thread'
        or diag 'loop ' . ($loop // '(none)');
    my ($line) = error_log_wait($mark, qr/lifecycle: posted $id: /,
                                settle => 0);
    my ($ran) = ($line // '') =~ /ran on (\d+)/;
    is $ran, $loop, 'the posted function ran on the connection\'s loop thread'
        or diag $line // 'not logged';
    is $c->roundtrip('after the post', 5), 'after the post', 'still echoes';
    $c->send(ws_close(1000));
}
