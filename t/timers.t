# The server's timers keep running while a client keeps it busy: a client
# that writes without a pause, so that there is always something to read,
# must not postpone them.
#
# The client has the lifecycle plugin take 0.1 ms over each message
# ("slow 100"), asks it to close ("close": the plugin calls server->close
# at once) and, in the same write and without a pause after it, floods
# 1000-byte text messages, far faster than they are served (the server
# always has some to read), and never answers the server's close.  The server must still end the connection
# once WebSocketCloseTimeout (1 s on /hardening/lifecycle-close1) has
# passed, within a generous bound.
# (Graceful restart with a flooding client: t/restart.t.)
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use Time::HiRes ();
use WSTest qw(:all);

plan tests => 4;

my $CLOSE_TIMEOUT = 1;
my $MARGIN = 4;

my $flood = ws_text('x' x 1000, mask_key => "\x01\x02\x03\x04") x 1000;

my $c = WSTest->open6455(path => '/hardening/lifecycle-close1')
    or BAIL_OUT("cannot open a WebSocket: $@");
my $t0 = Time::HiRes::time();
my $r = $c->flood_until_closed(first => ws_text('slow 100') . ws_text('close'),
                               flood => $flood);
my $took = $r->{ended} ? $r->{end_at} - $t0 : undef;
my $when = sub { defined $_[0] ? sprintf('%.2f s', $_[0]) : 'never' };
note sprintf 'ended after %s (%s), close frame after %s; %.0f MB written',
    $when->($took), $r->{how} // '-',
    $when->($r->{close_at} && $r->{close_at} - $t0), $r->{written} / 1e6;

ok $r->{ended}, 'the server ended the connection while the client flooded';
ok defined $took && $took < $CLOSE_TIMEOUT + $MARGIN,
   "within WebSocketCloseTimeout ($CLOSE_TIMEOUT s) + $MARGIN s";
my $info = ws_close_frame_info($r->{close});
is $info && $info->{code}, 1000, 'after sending its close (1000)';
cmp_ok $r->{written}, '>', 1024 * 1024,
   'the client kept writing meanwhile (over 1 MiB)';
