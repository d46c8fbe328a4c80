# Reads requests (one JSON line each on stdin: method, target, headers, body in base64) through
# Rack's own query and form parsers (Rack::Request) and prints what a Rack application sees.
require 'json'
require 'base64'
require 'rack'
require 'rack/mock'

STDOUT.sync = true
STDIN.each_line do |line|
  begin
    req = JSON.parse(line)
    body = Base64.strict_decode64(req['body'])
    headers = {}
    req['headers'].each do |name, value|
      key = name.downcase == 'content-type' ? 'CONTENT_TYPE' : name.downcase == 'content-length' ? 'CONTENT_LENGTH' : 'HTTP_' + name.upcase.tr('-', '_')
      headers[key] = headers.key?(key) ? "#{headers[key]}, #{value}" : value
    end
    env = Rack::MockRequest.env_for(req['target'], { method: req['method'], input: body }.merge(headers))
    r = Rack::Request.new(env)
    out = { method: r.request_method, path: r.path_info, query: r.GET, headers: {} }
    ct = (r.content_type || '').downcase
    if ct.start_with?('application/x-www-form-urlencoded')
      out[:form] = r.POST
    elsif ct.include?('json') && !body.empty?
      out[:json] = JSON.parse(body)
    end
    puts JSON.generate(out)
  rescue StandardError => e
    puts JSON.generate({ error: "#{e.class}: #{e.message}"[0, 200] })
  end
end
