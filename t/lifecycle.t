# The plugin's on_close and on_disconnect on every way a connection ends:
# on_disconnect exactly once each time, on_close only when the client's
# closing handshake arrived.  (Graceful restart and stop: t/restart.t.)
# Uses the test plugin t/plugins/lifecycle.c, which logs each callback
# with the client's port as the connection's id, and each call of
# on_disconnect (its state outlives the call, so a second call is counted
# rather than crashing the child; no child may crash either).
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use WSTest qw(:all);

plan tests => 6 * 3 + 1;

my $start_mark = error_log_mark();

# The callbacks logged for the connection $c since $mark, once the
# connection has ended: (on_close codes, number of on_disconnect).
sub callbacks {
    my ($mark, $id) = @_;
    error_log_wait($mark, qr/lifecycle: on_disconnect $id$/, timeout => 10,
                   settle => 0.5);
    my @close = map { /on_close (\d+)/ ? $1 : () }
                error_log_since($mark, qr/lifecycle: on_close \d+ \(id $id\)/);
    my @gone = error_log_since($mark, qr/lifecycle: on_disconnect $id$/);
    return (\@close, scalar @gone);
}

# Runs $end->($c) on a fresh connection to $path and checks the callbacks:
# on_close with $want_close (undef: none), on_disconnect once.  3 tests.
sub ends {
    my ($name, $path, $want_close, $end, $hixie) = @_;
    my $mark = error_log_mark();
    my $c;
    if ($hixie) {
        $c = WSTest->connect;
        my $r = $c->handshake76(path => $path);
        undef $c unless $r->{res} && $r->{res}{status} == 101;
    }
    else {
        $c = WSTest->open6455(path => $path);
    }
    ok $c, "$name: connected" or return fail($name), fail($name);
    my $id = $c->sock->sockport;
    $end->($c);
    my ($close, $gone) = callbacks($mark, $id);
    is "@$close", defined $want_close ? $want_close : '',
       "$name: on_close " . (defined $want_close ? $want_close : 'not called');
    is $gone, 1, "$name: on_disconnect exactly once";
}

my $path = '/hardening/lifecycle';

ends('client close', $path, 1000, sub {
    my $c = shift;
    $c->send(ws_close(1000, 'bye'));
    $c->read_until_close(5);
    $c->wait_eof(5);
});

ends('abort without a close frame', $path, undef, sub {
    shift->close;
});

ends('protocol error (unmasked frame)', $path, undef, sub {
    my $c = shift;
    $c->send(ws_text('no mask', mask => 0));
    my ($close) = $c->read_until_close(5);
    my $info = ws_close_frame_info($close);
    die "expected close 1002\n" unless $info && ($info->{code} // 0) == 1002;
    $c->wait_eof(5);
});

ends('idle timeout, client answers the close', '/hardening/lifecycle-idle',
     1001, sub {
    my $c = shift;
    my ($close) = $c->read_until_close(5);
    my $info = ws_close_frame_info($close);
    $c->send(ws_close($info ? $info->{code} : 1000));
    $c->wait_eof(5);
});

ends('idle timeout, client never answers', '/hardening/lifecycle-idle',
     undef, sub {
    my $c = shift;
    $c->read_until_close(5);
    $c->wait_eof(5);          # after WebSocketCloseTimeout (1 s)
});

ends('hixie-76 closing handshake', $path, 1005, sub {
    my $c = shift;
    $c->send(hixie_close_frame());
    $c->wait_eof(5);
}, 'hixie');

# no child crashed along the way (1 test)
{
    my @crash = crash_lines($start_mark);
    is scalar(@crash), 0, 'no httpd child crashed' or diag join "\n", @crash;
}
