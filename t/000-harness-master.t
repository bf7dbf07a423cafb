# Harness self-test with a master process and two workers (master_on,
# workers): start, serve, and stop cleanly between blocks.
#
#   TEST_NGINX_BINARY=/usr/sbin/nginx prove -I t/lib t/000-harness-master.t

use Test::Nginx::Socket;
# t/lib after Test::Nginx::Socket: prove -I t/lib gives ours, -I REAL/lib the
# real one.
use FindBin ();
use lib "$FindBin::Bin/lib";
use SmartImaging ();

if (!SmartImaging::nginx_binary_available()) {
    plan skip_all => 'no nginx binary (set TEST_NGINX_BINARY)';
}

master_on();
workers(2);
repeat_each(3);

plan tests => repeat_each() * 3 * blocks();

run_tests();

__DATA__

=== TEST 1: served by a worker
--- config
    location = /t { return 200 "pid $pid\n"; }
--- request
GET /t
--- response_body_like: ^pid \d+$
--- no_error_log
[alert]



=== TEST 2: the next block gets a fresh server
--- config
    location = /u { return 200 "u\n"; }
--- request
GET /missing-in-master.txt
--- error_code: 404
--- response_body_like: 404 Not Found
--- error_log
/missing-in-master.txt" failed (2: No such file or directory)
