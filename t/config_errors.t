# Sizes and durations that do not fit are configuration errors that name
# the directive, found by "httpd -t": WebSocketMaxMessageSize 99999999999G
# used to overflow a signed multiplication (undefined behaviour; UBSan
# stops httpd -t under "make test SANITIZE=1").  The largest size that
# fits (2^63 - 1 bytes, as a plain number or 8589934591G) is accepted,
# one more is not; "nan" is not a number of seconds.
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use WSTest qw(httpd_config_test);

my @sizes = qw(WebSocketMaxMessageSize WebSocketFragmentSize
               WebSocketMaxPendingBytes);
my @seconds = qw(WebSocketHandshakeTimeout WebSocketIdleTimeout
                 WebSocketPingInterval WebSocketCloseTimeout
                 WebSocketWriteTimeout);

# [ directive, value, expected error (undef: Syntax OK) ]
my @cases;
for my $d (@sizes) {
    my $large = qr/\Q$d\E: '[^']*' is too large \(at most 9223372036854775807 bytes\)/;
    my $not = qr/\Q$d\E: '[^']*' is not a size/;
    push @cases,
        [$d, '99999999999G', $large],
        [$d, '8589934592G', $large],          # 2^63
        [$d, '8796093022208M', $large],       # 2^63
        [$d, '9007199254740992K', $large],    # 2^63
        [$d, '9223372036854775808', $large],  # 2^63, no suffix
        [$d, '99999999999999999999999', $large],
        [$d, '8589934591G', undef],           # 2^63 - 2^30
        [$d, '9223372036854775807', undef],   # 2^63 - 1
        [$d, '16M', undef],
        [$d, '-1', $not],
        [$d, '12X', $not];
}
for my $d (@seconds) {
    my $not = qr/\Q$d\E: '[^']*' is not a number of seconds/;
    push @cases,
        [$d, 'nan', $not],
        [$d, '1e10', $not],
        [$d, '-1', $not],
        [$d, '0.5', undef];
}

plan tests => 3 * @cases;

my $dir = Apache::Test::vars('t_logs') . '/config-errors';

for my $case (@cases) {
    my ($directive, $value, $want) = @$case;
    my $name = "$directive $value";
    my ($status, $out) = httpd_config_test($dir, <<"CONF");
<Location /ws>
    $directive $value
</Location>
CONF
    ok !($status & 127), "$name: httpd -t did not crash"
        or diag "signal " . ($status & 127) . "\n$out";
    if (defined $want) {
        isnt $status >> 8, 0, "$name: httpd -t fails";
        like $out, $want, "$name: the error names the directive and why";
    }
    else {
        is $status >> 8, 0, "$name: httpd -t passes" or diag $out;
        like $out, qr/Syntax OK/, "$name: Syntax OK";
    }
}
