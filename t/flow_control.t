# server->pause_reading, through the test plugin t/plugins/lifecycle.c:
# its "pause N" command pauses reading the client and resumes it N
# seconds later from another thread.  While paused nothing the client
# sends is read (no echo, no pong), the connection stays open beyond the
# idle timeout and the ping interval; after the resume everything is
# answered in order, and the idle clock runs again.  (tcp_proxy's use of
# it: t/plugin_proxy.t.)
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use Time::HiRes ();
use WSTest qw(:all);

plan tests => 12;

# Opens $path, pauses for $secs; returns the connection and when the pause
# began.
sub paused {
    my ($path, $secs) = @_;
    my $c = WSTest->open6455(path => $path) or return;
    $c->send(ws_text("pause $secs"));
    my $m = $c->read_ws_message(5);
    return unless $m && $m->{payload} eq 'paused';
    return ($c, Time::HiRes::time());
}

sub describe_msg {
    my $m = shift;
    return 'nothing' unless $m;
    return "opcode $m->{opcode} \"$m->{payload}\"";
}

{
    # WebSocketIdleTimeout 1, paused for 3 s
    my $mark = error_log_mark();
    my ($c, $t0) = paused('/hardening/lifecycle-idle', 3);
    ok $c, 'paused (the plugin answered "paused")'
        or BAIL_OUT("cannot pause: $@");
    my $id = $c->sock->sockport;
    $c->send(ws_text('one') . ws_text('two') . ws_ping('p')
             . ws_text('three'));
    my $m = $c->read_ws_message(2);
    ok !$m, 'nothing answered for 2 s while paused, and no idle close'
        or diag 'got ' . describe_msg($m);
    my @got;
    while (@got < 4) {
        $m = $c->read_ws_message(5) or last;
        push @got, [$m->{opcode}, $m->{payload}];
    }
    my $after = Time::HiRes::time() - $t0;
    is_deeply \@got, [[OP_TEXT, 'one'], [OP_TEXT, 'two'], [OP_PONG, 'p'],
                      [OP_TEXT, 'three']],
        'after the resume: the echoes and the pong, in order';
    ok $after >= 2.8, sprintf 'only after the resume (%.1f s after the '
       . 'pause of 3 s)', $after;
    ok scalar(error_log_wait($mark, qr/lifecycle: resumed $id: status 0$/)),
       'the resume succeeded';
    $c->send(ws_text('still open'));
    $m = $c->read_ws_message(5);
    is_deeply $m && [$m->{opcode}, $m->{payload}], [OP_TEXT, 'still open'],
        'the connection is still open';
    # the idle clock runs again once reading resumed
    my $t1 = Time::HiRes::time();
    my ($close) = $c->read_until_close(5);
    my $info = ws_close_frame_info($close);
    is $info && $info->{code}, 1001, 'then the idle timeout closes it';
    my $idle = Time::HiRes::time() - $t1;
    ok $idle > 0.5 && $idle < 3, sprintf 'after about 1 s (%.1f s)', $idle;
}

{
    # WebSocketPingInterval 1, paused for 3 s: no close for an unanswered
    # ping (the client's pongs cannot be read while paused)
    my ($c, $t0) = paused('/hardening/lifecycle-ping', 3);
    ok $c, 'paused on a location with WebSocketPingInterval 1';
    my ($close, @seen);
    while (Time::HiRes::time() - $t0 < 3.5) {
        my $m = $c->read_ws_message(0.2) or next;
        if ($m->{opcode} == OP_PING) {
            $c->send(ws_pong($m->{payload}));
            next;
        }
        push @seen, $m;
        $close = $m, last if $m->{opcode} == OP_CLOSE;
    }
    ok !$close, 'not closed during the pause' or diag describe_msg($close);
    $c->send(ws_text('after'));
    my $m;
    do { $m = $c->read_ws_message(5) } while $m && $m->{opcode} == OP_PING;
    is_deeply $m && [$m->{opcode}, $m->{payload}], [OP_TEXT, 'after'],
        'and echoes after the resume';
    $c->send(ws_close(1000));
    my ($f) = $c->read_until_close(5);
    my $info = ws_close_frame_info($f);
    is $info && $info->{code}, 1000, 'then closes normally';
}
