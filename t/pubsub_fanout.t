# 10,000 subscribers on one topic (issue 13), on a private httpd with 2
# children: every subscriber gets each published message once and in
# order, and a publish to a topic nobody subscribes to is answered by
# nothing.  Uses the lifecycle plugin's "subscribe T" and "publish T X".
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use Time::HiRes ();
use WSTest qw(:all);

my $N = 10_000;
my $limit = raise_nofile($N + 500);
plan skip_all => "open file limit $limit is below " . ($N + 500)
    if $limit < $N + 500;
plan tests => 6;

my $h = module_httpd('pubsub-fanout', <<'CONF');
StartServers 2
ServerLimit 2
ThreadLimit 16
ThreadsPerChild 16
MaxRequestWorkers 32
MinSpareThreads 32
MaxSpareThreads 48
AsyncRequestWorkerFactor 400
LogLevel warn
<Location /lc>
    SetHandler websocket-handler
    WebSocketHandler @SERVERROOT@/plugins/.libs/mod_websocket_lifecycle.so lifecycle_init
    Require all granted
</Location>
CONF
END { $h->{stop}->() if $h }

my @c;
my $t0 = Time::HiRes::time();
for (1 .. $N) {
    my $c = WSTest->open6455(port => $h->{port}, path => '/lc', timeout => 10)
        or last;
    $c->send(ws_text('subscribe big')) or last;
    push @c, $c;
}
is scalar(@c), $N, sprintf '%d clients open and subscribing (%.1f s)',
    scalar(@c), Time::HiRes::time() - $t0;
my $subscribed = grep { (($_->read_ws_message(10) || {})->{payload} // '')
                        eq 'subscribed big' } @c;
is $subscribed, $N, "$N subscribed to one topic";

my %kids = map { (server_child($_, $h->{pid}) // 0) => 1 } @c[0 .. 19];
delete $kids{0};

$c[0]->send(ws_text('publish nobody x'));
$t0 = Time::HiRes::time();
$c[0]->send(ws_text("publish big m$_")) for 1 .. 3;
my @trouble;
for my $i (0 .. $#c) {
    my @got = map { ($c[$i]->read_ws_message(10) || {})->{payload} // 'none' }
        1 .. 3;
    push @trouble, "client $i: @got" unless "@got" eq 'm1 m2 m3';
    last if @trouble > 5;
}
my $took = Time::HiRes::time() - $t0;
is scalar(keys %kids), 2, 'the subscribers are spread over both children';
is "@trouble", '', sprintf '3 messages reached all %d subscribers in %d '
    . 'children once, in order (%.2f s to read them all)', $N,
    scalar(keys %kids), $took;
my @extra = grep { defined $_->read_ws_message(0.001) } @c[0 .. 99];
is scalar(@extra), 0, 'nothing else arrived (the publish to no subscriber '
    . 'went nowhere)';
ok !(grep { /segfault|exit signal/ }
     do { open my $fh, '<', "$h->{dir}/error_log"; <$fh> }),
   'no child crashed';
$_->close for @c;
