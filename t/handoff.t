# The hand-off of a WebSocket from the MPM's worker to a loop thread
# (issue 10): the event MPM still writes to the connection's state for a
# moment after the suspend_connection hook posted the connection to its
# loop.  A client that sends the upgrade and a close frame in one write
# and goes away makes the loop end the connection at once; its pool, which
# holds that state, must outlive the MPM's writes.  1,500 such clients in
# a row used to crash a child a few times (a worker writing to a destroyed
# pool, with MaxMemFree 1 unmapped at once).
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use WSTest qw(:all);

plan tests => 3;

my $mark = error_log_mark();
my ($h, $p) = server_hostport();
my $request = rfc6455_request(host => "$h:$p", path => '/echo');
my $n = 0;
for (1 .. 1500) {
    my $c = WSTest->connect or next;
    # the upgrade and the close frame in one write: the loop gets both
    $c->send($request . ws_close(1000));
    $c->close;
    $n++;
}
is $n, 1500, '1500 clients sent an upgrade and a close in one write';
my $c = WSTest->open6455(path => '/echo');
$c->send(ws_text('still here')) if $c;
my $m = $c ? $c->read_ws_message(5) : undef;
ok $m && $m->{payload} eq 'still here', 'the server still echoes afterwards';
my @crash = crash_lines($mark, 5);
is scalar(@crash), 0, 'no child crashed' or diag join "\n", @crash;
