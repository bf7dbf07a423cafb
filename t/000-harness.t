# Self-test of the Test::Nginx-compatible harness (t/lib/Test/Nginx/*.pm)
# against a plain nginx: no smart-imaging module needed.  Only modules that
# are part of nginx's default build are used (proxy, ssi, rewrite, ...).
# Every block passes under the real Test::Nginx too (t/run-real-test-nginx.sh),
# with the same number of tests: these are the semantics both share.
#
#   TEST_NGINX_BINARY=/usr/sbin/nginx prove -I t/lib t/000-harness.t

use Test::Nginx::Socket;
# t/lib after Test::Nginx::Socket: prove -I t/lib gives ours, -I REAL/lib the
# real one.
use FindBin ();
use lib "$FindBin::Bin/lib";
use SmartImaging ();

# The real Test::Nginx does not set it (lua-nginx-module's t/*.t do this too).
$ENV{TEST_NGINX_HTML_DIR} ||= html_dir();

if (!SmartImaging::nginx_binary_available()) {
    plan skip_all => 'no nginx binary (set TEST_NGINX_BINARY)';
}

# Test data referenced from "eval" sections as $::Big / $::Blob.  (Eval
# sections run in package Test::Base::Filter, whose own join() method makes
# a bare join() there ambiguous, so build the data here.)
our $Big  = join '', map { sprintf "line %06d\n", $_ } 1 .. 20000;
our $Blob = join '', map { chr($_ % 256) } 0 .. 70000;

# An arbitrary TEST_NGINX_* variable, substituted in config sections.
$ENV{TEST_NGINX_GREETING} = 'howdy';

repeat_each(2);
no_long_string();
log_level('info');

# Blocks without a --- config get this one.
add_block_preprocessor(sub {
    my $block = shift;
    if (!defined $block->config) {
        $block->set_value('config', <<'_EOC_');
    location = /pre {
        return 200 "from preprocessor\n";
    }
_EOC_
    }
});

plan 'no_plan';

run_tests();

__DATA__

=== TEST 1: static file from user_files
--- user_files
>>> hello.txt
Hello, world
--- request
GET /hello.txt
--- response_headers
Content-Type: text/plain
Content-Length: 13
!Transfer-Encoding
--- response_body
Hello, world
--- no_error_log
[error]



=== TEST 2: return 200, headers present and absent
--- config
    location = /t {
        add_header X-Foo bar;
        return 200 "hello from return\n";
    }
--- request
GET /t
--- response_headers
X-Foo: bar
!X-Bar
X-Missing-Or-Empty:
--- raw_response_headers_like: ^HTTP/1\.1 200 OK\r\n
--- response_body
hello from return
--- error_code: 200



=== TEST 3: 404 and error_log
--- request
GET /missing.txt
--- error_code: 404
--- response_body_like: 404 Not Found
--- error_log
No such file or directory
missing.txt
--- no_error_log
[alert]
[emerg]



=== TEST 4: error_log eval with qr// and an array
--- request
GET /nope.html
--- error_code: 404
--- response_body_like: <title>404 Not Found</title>
--- error_log eval
[qr/open\(\) ".*\/nope\.html" failed \(2: No such file/, "[error]"]
--- no_error_log eval
qr/\[(?:alert|crit|emerg)\]/



=== TEST 5: per-block log_level
--- log_level: crit
--- request
GET /quiet.txt
--- error_code: 404
--- no_error_log
No such file or directory



=== TEST 6: chunked response through a proxied upstream server
--- http_config
    server {
        listen unix:$TEST_NGINX_HTML_DIR/up.sock;
        root $TEST_NGINX_HTML_DIR;
        location /up/ {
            # ssi drops Content-Length: the upstream answers chunked.
            ssi on;
            ssi_types text/plain;
        }
    }
--- config
    location /up/ {
        proxy_pass http://unix:$TEST_NGINX_HTML_DIR/up.sock;
        proxy_http_version 1.1;
        proxy_buffering off;
    }
--- user_files eval
[["up/big.txt", $::Big]]
--- request
GET /up/big.txt
--- response_headers
Transfer-Encoding: chunked
!Content-Length
--- response_body eval
$::Big
--- no_error_log
[error]



=== TEST 7: binary user file, byte-exact compare
--- user_files eval
[["bin/blob.dat", $::Blob]]
--- request
GET /bin/blob.dat
--- response_headers
Content-Length: 70001
--- response_body eval
$::Blob



=== TEST 8: response_body_filters
--- user_files eval
[["bin/blob.dat", $::Blob]]
--- request
GET /bin/blob.dat
--- response_body_filters
length
--- response_body chomp
70001



=== TEST 9: more_headers, POST body, $TEST_NGINX_ substitution
--- config
    location = /echo {
        return 200 "greeting=$TEST_NGINX_GREETING foo=$http_x_foo
len=$content_length port=$server_port\n";
    }
--- more_headers
X-Foo: bar baz
--- request
POST /echo
hello world
--- response_body eval
"greeting=howdy foo=bar baz\nlen=11 port=$ENV{TEST_NGINX_SERVER_PORT}\n"



=== TEST 10: request eval with an array of requests
--- config
    location = /a { return 200 "a\n"; }
    location = /b { return 403; }
--- request eval
["GET /a", "GET /b"]
--- error_code eval
[200, 403]
--- response_body_like eval
["^a\$", "403 Forbidden"]



=== TEST 11: raw_request, HTTP/1.0
--- config
    location = /t { return 200 "raw ok\n"; }
--- raw_request eval
"GET /t HTTP/1.0\r\nHost: localhost\r\n\r\n"
--- raw_response_headers_like: ^HTTP/1\.1 200 OK\r\n
--- response_headers
Connection: close
--- response_body
raw ok



=== TEST 12: main_config and http_config
--- main_config
    env TEST_NGINX_GREETING;
--- http_config
    map $uri $harness_mapped {
        default  "mapped-$TEST_NGINX_GREETING";
    }
--- config
    location = /map { return 200 "$harness_mapped\n"; }
--- request
GET /map
--- response_body
mapped-howdy



=== TEST 13: block preprocessor supplies a default config
--- request
GET /pre
--- response_body
from preprocessor



=== TEST 14: the default "location /" serves the html dir and its index.html
--- config
--- request
GET /
--- response_headers
Content-Type: text/html
--- response_body chomp
<html><head><title>It works!</title></head><body>It works!</body></html>



=== TEST 15: must_die with a bad directive
--- config
    location = /t {
        harness_bogus_directive on;
    }
--- must_die
--- error_log
[emerg]
unknown directive "harness_bogus_directive"



=== TEST 16: timeout with abort is not a failure
--- config
    location = /slow {
        # headers and the first bytes go out at once, the rest at 1 byte/s
        limit_rate_after 400;
        limit_rate 1;
        alias $TEST_NGINX_HTML_DIR/slow.txt;
    }
--- user_files eval
[["slow.txt", "a" x 1000]]
--- request
GET /slow
--- timeout: 300ms
--- abort
--- error_code: 200
--- response_headers
Content-Length: 1000



=== TEST 17: HEAD request has no body
--- user_files
>>> h.txt
some content
--- request
HEAD /h.txt
--- response_headers
Content-Length: 13
--- response_body chomp



=== TEST 18: a skipped block
--- SKIP
--- request
GET /never
--- response_body
never



=== TEST 19: response_headers_like: anchored regexes; "!Name" is absent or empty
--- config
    location = /t {
        add_header X-Foo bar;
        add_header X-Empty "";
        return 200 "ok\n";
    }
--- request
GET /t
--- response_headers_like
X-Foo: ba[r]
Server: nginx(/[\d.]+)?
Date: \w{3}, \d\d \w{3} \d{4} [\d:]{8} GMT
!X-Empty
!X-Absent
--- response_body
ok



=== TEST 20: an array of requests: per-request headers, bodies, expectations
--- config
    location = /echo {
        return 200 "$request_method x-n=$http_x_n len=$content_length\n";
    }
--- request eval
["GET /echo", "POST /echo\nhello", "PUT /echo\n  padded body \n\n"]
--- more_headers eval
["X-N: 0", "X-N: 1", "X-N: 2"]
--- error_code eval
[200, 200, 200]
--- response_headers eval
["Content-Type: text/plain", "Content-Type: text/plain", "!X-Foo"]
--- response_body eval
["GET x-n=0 len=\n", "POST x-n=1 len=5\n", "PUT x-n=2 len=11\n"]



=== TEST 21: pipelined_requests: one connection, one response each, in order
--- config
    location = /a { return 200 "a $connection_requests\n"; }
    location = /b { return 201 "b $connection_requests $http_x_n\n"; }
--- pipelined_requests eval
["GET /a", "GET /b"]
--- more_headers eval
["X-N: first", "X-N: second"]
--- error_code eval
[200, 201]
--- response_body eval
["a 1\n", "b 2 second\n"]



=== TEST 22: error_log is checked after each response of an array of requests
--- request eval
["GET /missing-one.txt", "GET /missing-two.txt"]
--- error_code eval
[404, 404]
--- response_body_like eval
["404 Not Found", "404 Not Found"]
--- error_log eval
qr/open\(\) "[^"]*missing-(?:one|two)\.txt" failed/
--- no_error_log
[alert]



=== TEST 23: response_body eval with a qr// is a regex match
--- config
    location = /t { return 200 "abc 123\n"; }
--- request
GET /t
--- response_body eval
qr/^abc \d+$/



=== TEST 24: grep_error_log and access_log
--- request
GET /missing-grep.txt
--- error_code: 404
--- response_body_like: 404 Not Found
--- grep_error_log chop
/missing-grep.txt" failed
--- grep_error_log_out
/missing-grep.txt" failed
--- access_log
"GET /missing-grep.txt HTTP/1.1" 404
--- no_access_log
HTTP/1.1" 500
